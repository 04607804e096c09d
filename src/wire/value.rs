//! The Python object model that crosses the wire: what `pickle.loads` in CPython
//! would build from the protocol's messages, and what we pickle for it to build.
//!
//! Tuples and lists are distinct (a list can't key a dict in Python and compares
//! differently), and dicts keep insertion order, as Python's do.

use std::fmt;
use std::hash::{Hash, Hasher};

/// One Python value. Containers own their children; nesting depth is bounded by the
/// decoder (see `decode::MAX_DEPTH`), so the recursive `Drop`, `Eq` and `Hash` are safe.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64`. The protocol never carries one; we keep its decimal
    /// digits so it can still be shown, and nothing treats it as a number.
    BigInt(String),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered, keys unique (a repeated key keeps its first position and
    /// its last value, as in Python).
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    FrozenSet(Vec<Value>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn tuple(items: impl IntoIterator<Item = Value>) -> Value {
        Value::Tuple(items.into_iter().collect())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A Python `int` (not `bool`, which the GCD also refuses where it wants an int).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The items of a tuple or list: what Python's `a, b = x` accepts for our purposes.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// A two-item tuple or list.
    pub fn as_pair(&self) -> Option<(&Value, &Value)> {
        match self.as_seq()? {
            [a, b] => Some((a, b)),
            _ => None,
        }
    }

    /// Whether Python could use this value as a dict key or set member.
    pub fn is_hashable(&self) -> bool {
        match self {
            Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::ByteArray(_) => false,
            Value::Tuple(items) => items.iter().all(Value::is_hashable),
            _ => true,
        }
    }

    /// Python's type name, for messages that say what arrived instead of what was expected.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::ByteArray(_) => "bytearray",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
        }
    }
}

/// Structural equality by Python type; floats compare by bit pattern so that `Value`
/// can be a hash key (the protocol has no floats; this only has to be consistent).
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (None, None) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (BigInt(a), BigInt(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Str(a), Str(b)) => a == b,
            (Bytes(a), Bytes(b)) | (ByteArray(a), ByteArray(b)) => a == b,
            (Tuple(a), Tuple(b)) | (List(a), List(b)) => a == b,
            (Set(a), Set(b)) | (FrozenSet(a), FrozenSet(b)) => a.len() == b.len() && a.iter().all(|x| b.contains(x)),
            (Dict(a), Dict(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v == v2))
            }
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::None => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) => i.hash(state),
            Value::BigInt(s) | Value::Str(s) => s.hash(state),
            Value::Float(f) => f.to_bits().hash(state),
            Value::Bytes(b) | Value::ByteArray(b) => b.hash(state),
            Value::Tuple(v) | Value::List(v) => v.hash(state),
            // Unordered containers: hash the size only, consistent with the
            // order-insensitive equality above.
            Value::Set(v) | Value::FrozenSet(v) => v.len().hash(state),
            Value::Dict(v) => v.len().hash(state),
        }
    }
}

/// Shows the value as Python's `repr()` would, so logs and errors read like the peer's.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::pyrepr::repr(self))
    }
}
