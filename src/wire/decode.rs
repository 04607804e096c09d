//! Bounded, total decoding of pickle bytes (protocols 0 to 5) into [`Value`]s.
//!
//! Why not `serde_pickle::from_slice`: on version 1.2.0 it fails on valid CPython output
//! that references one tuple twice through the memo ("recursive structure found"), it
//! deep-copies DUP and memo references (a 60-byte pickle can demand gigabytes), and it
//! recurses once per nesting level (10,000 nested lists overflow the main thread's
//! stack). Each of those aborts the process rather than returning an error, and a node
//! must survive whatever the network sends it.
//!
//! So the pickle machine here runs over an arena: every object the pickle builds gets
//! an index, and the stack, the memo and container children hold indices. DUP and memo
//! gets copy an index, never a value, and mutation of a memoized list or dict (which
//! CPython emits as `EMPTY_DICT MEMOIZE ... SETITEMS`) is seen through every reference,
//! as in Python. Only once STOP is reached is the result turned into a tree, and that
//! step is where the limits bite: depth at most [`MAX_DEPTH`] (which also ends cycles),
//! and no more nodes and payload bytes than a small multiple of the input.
//!
//! Opcodes that would construct arbitrary objects (GLOBAL, REDUCE, BUILD, ...) are
//! refused: no protocol message needs them, and no code ever runs.

use super::opcodes as op;
use super::Value;
use std::collections::HashMap;
use std::fmt;

/// Deepest nesting we materialize. The protocol's deepest message, the wrapped dialect
/// `((name, {pid: (host, port)}), (pid, pid))`, is 4 levels; 32 leaves room for any
/// reasonable peer while keeping the recursive build, `Drop`, `Eq` and `Hash` of the
/// result to a few kilobytes of stack on any thread.
pub const MAX_DEPTH: usize = 32;

/// Value nodes allowed per input byte. Without sharing every node costs at least one
/// opcode byte; CPython's memo sharing (a 2-byte BINGET of a memoized `(host, port)`
/// tuple yields 3 nodes) stays under 2. Each node is one 32-byte `Value`.
pub const NODES_PER_INPUT_BYTE: usize = 2;

/// String and bytes payload allowed per input byte. A shared host name referenced by a
/// 2-byte BINGET repeats its length for 2 bytes of input: `'cs2.seattleu.edu'` is 8
/// bytes per input byte. 16 admits host names up to 32 characters shared everywhere.
pub const PAYLOAD_PER_INPUT_BYTE: usize = 16;

/// Slack on both budgets for tiny pickles (a 5-byte pickle may still hold a short string).
const BUDGET_SLACK: usize = 256;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset of the opcode at fault (the input length for `Truncated`, 0 for limits
    /// hit while building the result).
    pub offset: usize,
    pub kind: DecodeErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The input ended before STOP: a valid prefix of a pickle.
    Truncated,
    /// A byte that is not an opcode.
    UnknownOpcode(u8),
    /// An opcode that would import or construct an object, or use out-of-band buffers.
    Refused(&'static str),
    /// The opcodes are well-formed but don't make a valid pickle (stack underflow, a
    /// missing memo entry, a list used as a dict key, bad text, ...).
    Malformed(String),
    /// Nesting beyond [`MAX_DEPTH`] (or a self-referencing container).
    TooDeep,
    /// More output than the input size justifies (a DUP or memo bomb).
    TooLarge,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DecodeErrorKind::Truncated => write!(f, "pickle truncated after {} bytes", self.offset),
            DecodeErrorKind::UnknownOpcode(b) => {
                write!(f, "unknown pickle opcode 0x{b:02x} at byte {}", self.offset)
            }
            DecodeErrorKind::Refused(name) => {
                write!(f, "refused pickle opcode {name} at byte {} (it would construct an object)", self.offset)
            }
            DecodeErrorKind::Malformed(why) => {
                write!(f, "malformed pickle at byte {}: {why}", self.offset)
            }
            DecodeErrorKind::TooDeep => write!(f, "pickle nested deeper than {MAX_DEPTH} levels"),
            DecodeErrorKind::TooLarge => {
                write!(f, "pickle expands to more than its size justifies (memo or DUP bomb)")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

impl DecodeError {
    /// Whether the input is a cut-short prefix rather than something no pickle could be.
    pub fn is_truncated(&self) -> bool {
        self.kind == DecodeErrorKind::Truncated
    }
}

/// Decodes one pickle from the start of `input`; bytes after its STOP are ignored, as
/// `pickle.loads` ignores them.
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    let mut machine =
        Machine { input, pos: 0, arena: Vec::new(), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    let root = machine.run()?;
    let mut budget = Budget {
        nodes: NODES_PER_INPUT_BYTE * input.len() + BUDGET_SLACK,
        payload: PAYLOAD_PER_INPUT_BYTE * input.len() + BUDGET_SLACK,
    };
    machine.build(root, &mut budget).map_err(|kind| DecodeError { offset: 0, kind })
}

type Id = usize;

/// An object under construction. Containers hold arena indices so that shared and
/// mutated references behave as Python's do without copying.
enum Obj {
    Leaf(Value),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    FrozenSet(Vec<Id>),
}

struct Budget {
    nodes: usize,
    payload: usize,
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    arena: Vec<Obj>,
    stack: Vec<Id>,
    /// Stack heights at each MARK (CPython's metastack).
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

fn malformed(why: impl Into<String>) -> DecodeErrorKind {
    DecodeErrorKind::Malformed(why.into())
}

impl<'a> Machine<'a> {
    fn run(&mut self) -> Result<Id, DecodeError> {
        loop {
            let at = self.pos;
            let code = *self
                .input
                .get(at)
                .ok_or(DecodeError { offset: self.input.len(), kind: DecodeErrorKind::Truncated })?;
            self.pos += 1;
            match self.step(code) {
                Ok(Some(root)) => return Ok(root),
                Ok(None) => {}
                Err(kind) => {
                    let offset = if kind == DecodeErrorKind::Truncated { self.input.len() } else { at };
                    return Err(DecodeError { offset, kind });
                }
            }
        }
    }

    /// Runs one opcode; returns the result object at STOP.
    fn step(&mut self, code: u8) -> Result<Option<Id>, DecodeErrorKind> {
        match code {
            op::STOP => return self.pop().map(Some),
            op::PROTO => {
                let version = self.take(1)?[0];
                if version > 5 {
                    return Err(malformed(format!("unsupported pickle protocol {version}")));
                }
            }
            op::FRAME => {
                self.take(8)?;
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                if self.stack.pop().is_none() {
                    self.pop_mark()?;
                }
            }
            op::POP_MARK => {
                self.pop_mark()?;
            }
            op::DUP => {
                let top = self.top()?;
                self.stack.push(top);
            }
            op::NONE => self.push_leaf(Value::None),
            op::NEWTRUE => self.push_leaf(Value::Bool(true)),
            op::NEWFALSE => self.push_leaf(Value::Bool(false)),
            op::INT => {
                let text = self.line()?;
                let v = match text {
                    b"01" => Value::Bool(true),
                    b"00" => Value::Bool(false),
                    _ => parse_int(text)?,
                };
                self.push_leaf(v);
            }
            op::LONG => {
                let text = self.line()?;
                let text = text.strip_suffix(b"L").unwrap_or(text);
                let v = parse_int(text)?;
                self.push_leaf(v);
            }
            op::BININT => {
                let b = self.take(4)?;
                self.push_leaf(Value::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]).into()));
            }
            op::BININT1 => {
                let b = self.take(1)?;
                self.push_leaf(Value::Int(b[0].into()));
            }
            op::BININT2 => {
                let b = self.take(2)?;
                self.push_leaf(Value::Int(u16::from_le_bytes([b[0], b[1]]).into()));
            }
            op::LONG1 | op::LONG4 => {
                let len = self.counted(if code == op::LONG1 { 1 } else { 4 })?;
                let v = long_from_le(len);
                self.push_leaf(v);
            }
            op::FLOAT => {
                let text = self.line()?;
                let x = std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .ok_or_else(|| malformed("bad FLOAT text"))?;
                self.push_leaf(Value::Float(x));
            }
            op::BINFLOAT => {
                let b = self.take(8)?;
                let bits = u64::from_be_bytes(b.try_into().expect("took 8 bytes"));
                self.push_leaf(Value::Float(f64::from_bits(bits)));
            }
            op::STRING => {
                let text = self.line()?;
                let bytes = unquote_py2_string(text)?;
                self.push_leaf(Value::Str(ascii_str(bytes)?));
            }
            op::BINSTRING | op::SHORT_BINSTRING => {
                let raw = self.counted(if code == op::BINSTRING { 4 } else { 1 })?;
                self.push_leaf(Value::Str(ascii_str(raw.to_vec())?));
            }
            op::UNICODE => {
                let text = self.line()?;
                self.push_leaf(Value::Str(raw_unicode_escape(text)?));
            }
            op::BINUNICODE | op::SHORT_BINUNICODE | op::BINUNICODE8 => {
                let width = match code {
                    op::SHORT_BINUNICODE => 1,
                    op::BINUNICODE => 4,
                    _ => 8,
                };
                let raw = self.counted(width)?;
                let s = std::str::from_utf8(raw).map_err(|_| malformed("string is not UTF-8"))?;
                self.push_leaf(Value::Str(s.to_owned()));
            }
            op::BINBYTES | op::SHORT_BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => {
                let width = match code {
                    op::SHORT_BINBYTES => 1,
                    op::BINBYTES => 4,
                    _ => 8,
                };
                let raw = self.counted(width)?.to_vec();
                self.push_leaf(if code == op::BYTEARRAY8 { Value::ByteArray(raw) } else { Value::Bytes(raw) });
            }
            op::EMPTY_TUPLE => self.push(Obj::Tuple(Vec::new())),
            op::EMPTY_LIST => self.push(Obj::List(Vec::new())),
            op::EMPTY_DICT => self.push(Obj::Dict(Vec::new())),
            op::EMPTY_SET => self.push(Obj::Set(Vec::new())),
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.push(Obj::Tuple(items));
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(code - op::TUPLE1 + 1);
                if self.stack.len() < n {
                    return Err(malformed("stack underflow"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.push(Obj::Tuple(items));
            }
            op::LIST => {
                let items = self.pop_mark()?;
                self.push(Obj::List(items));
            }
            op::DICT => {
                let items = self.pop_mark()?;
                let pairs = pairs_of(items)?;
                self.push(Obj::Dict(pairs));
            }
            op::FROZENSET => {
                let items = self.pop_mark()?;
                self.push(Obj::FrozenSet(items));
            }
            op::APPEND => {
                let item = self.pop()?;
                let target = self.top()?;
                match &mut self.arena[target] {
                    Obj::List(items) => items.push(item),
                    _ => return Err(malformed("APPEND to something that is not a list")),
                }
            }
            op::APPENDS => {
                let new = self.pop_mark()?;
                let target = self.top()?;
                match &mut self.arena[target] {
                    Obj::List(items) => items.extend(new),
                    _ => return Err(malformed("APPENDS to something that is not a list")),
                }
            }
            op::SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                let target = self.top()?;
                match &mut self.arena[target] {
                    Obj::Dict(pairs) => pairs.push((key, value)),
                    _ => return Err(malformed("SETITEM on something that is not a dict")),
                }
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                let new = pairs_of(items)?;
                let target = self.top()?;
                match &mut self.arena[target] {
                    Obj::Dict(pairs) => pairs.extend(new),
                    _ => return Err(malformed("SETITEMS on something that is not a dict")),
                }
            }
            op::ADDITEMS => {
                let new = self.pop_mark()?;
                let target = self.top()?;
                match &mut self.arena[target] {
                    Obj::Set(items) => items.extend(new),
                    _ => return Err(malformed("ADDITEMS to something that is not a set")),
                }
            }
            op::GET | op::BINGET | op::LONG_BINGET => {
                let index = self.memo_index(code)?;
                let id = *self.memo.get(&index).ok_or_else(|| malformed(format!("memo entry {index} not found")))?;
                self.stack.push(id);
            }
            op::PUT | op::BINPUT | op::LONG_BINPUT => {
                let index = self.memo_index(code)?;
                let top = self.top()?;
                self.memo.insert(index, top);
            }
            op::MEMOIZE => {
                let top = self.top()?;
                self.memo.insert(self.memo.len() as u64, top);
            }
            op::GLOBAL => return Err(DecodeErrorKind::Refused("GLOBAL")),
            op::STACK_GLOBAL => return Err(DecodeErrorKind::Refused("STACK_GLOBAL")),
            op::REDUCE => return Err(DecodeErrorKind::Refused("REDUCE")),
            op::BUILD => return Err(DecodeErrorKind::Refused("BUILD")),
            op::INST => return Err(DecodeErrorKind::Refused("INST")),
            op::OBJ => return Err(DecodeErrorKind::Refused("OBJ")),
            op::NEWOBJ => return Err(DecodeErrorKind::Refused("NEWOBJ")),
            op::NEWOBJ_EX => return Err(DecodeErrorKind::Refused("NEWOBJ_EX")),
            op::EXT1 | op::EXT2 | op::EXT4 => return Err(DecodeErrorKind::Refused("EXT")),
            op::PERSID | op::BINPERSID => return Err(DecodeErrorKind::Refused("PERSID")),
            op::NEXT_BUFFER | op::READONLY_BUFFER => return Err(DecodeErrorKind::Refused("out-of-band buffer")),
            other => return Err(DecodeErrorKind::UnknownOpcode(other)),
        }
        Ok(None)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeErrorKind> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.input.len());
        let end = end.ok_or(DecodeErrorKind::Truncated)?;
        let input: &'a [u8] = self.input;
        let bytes = &input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// A little-endian length of `width` bytes, then that many bytes. The length is
    /// checked against what is left before anything is allocated.
    fn counted(&mut self, width: usize) -> Result<&'a [u8], DecodeErrorKind> {
        let len_bytes = self.take(width)?;
        let len = len_bytes.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        if width == 4 && len > i32::MAX as u64 {
            // BINSTRING's length is signed in CPython; the others can't reach this.
            return Err(malformed("negative length"));
        }
        let len = usize::try_from(len).map_err(|_| DecodeErrorKind::Truncated)?;
        self.take(len)
    }

    /// A protocol-0 text argument, without its newline.
    fn line(&mut self) -> Result<&'a [u8], DecodeErrorKind> {
        let input: &'a [u8] = self.input;
        let rest = &input[self.pos..];
        let n = rest.iter().position(|b| *b == b'\n').ok_or(DecodeErrorKind::Truncated)?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    fn memo_index(&mut self, code: u8) -> Result<u64, DecodeErrorKind> {
        Ok(match code {
            op::GET | op::PUT => {
                let text = self.line()?;
                std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .ok_or_else(|| malformed("bad memo index"))?
            }
            op::BINGET | op::BINPUT => u64::from(self.take(1)?[0]),
            _ => {
                let b = self.take(4)?;
                u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
        })
    }

    fn push(&mut self, obj: Obj) {
        self.arena.push(obj);
        self.stack.push(self.arena.len() - 1);
    }

    fn push_leaf(&mut self, v: Value) {
        self.push(Obj::Leaf(v));
    }

    fn pop(&mut self) -> Result<Id, DecodeErrorKind> {
        // Like CPython, items below the innermost MARK are out of reach.
        if self.marks.last().is_some_and(|m| *m >= self.stack.len()) {
            return Err(malformed("stack underflow (MARK)"));
        }
        self.stack.pop().ok_or_else(|| malformed("stack underflow"))
    }

    fn top(&self) -> Result<Id, DecodeErrorKind> {
        self.stack.last().copied().ok_or_else(|| malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, DecodeErrorKind> {
        let height = self.marks.pop().ok_or_else(|| malformed("no MARK on the stack"))?;
        Ok(self.stack.split_off(height.min(self.stack.len())))
    }

    /// Turns arena object `root` into a tree, within the depth and output budgets.
    /// Iterative, with an explicit stack of open containers, so that building uses the
    /// same small amount of native stack whatever the input's shape.
    fn build(&self, root: Id, budget: &mut Budget) -> Result<Value, DecodeErrorKind> {
        let mut open: Vec<Open> = Vec::new();
        let mut next = root;
        loop {
            // Enter `next`: a leaf is finished at once, a container is opened.
            if open.len() >= MAX_DEPTH {
                return Err(DecodeErrorKind::TooDeep);
            }
            budget.nodes = budget.nodes.checked_sub(1).ok_or(DecodeErrorKind::TooLarge)?;
            let mut finished = match &self.arena[next] {
                Obj::Leaf(v) => {
                    let payload = match v {
                        Value::Str(s) | Value::BigInt(s) => s.len(),
                        Value::Bytes(b) | Value::ByteArray(b) => b.len(),
                        _ => 0,
                    };
                    budget.payload = budget.payload.checked_sub(payload).ok_or(DecodeErrorKind::TooLarge)?;
                    Some(v.clone())
                }
                container => {
                    open.push(Open::new(container));
                    None
                }
            };
            // Hand finished values up, closing containers whose children are all built,
            // until one has a child left to enter.
            loop {
                if let Some(v) = finished.take() {
                    match open.last_mut() {
                        None => return Ok(v),
                        Some(parent) => parent.built.push(v),
                    }
                }
                let top = open.last_mut().expect("a container is open here");
                if let Some(&child) = top.children.get(top.built.len()) {
                    next = child;
                    break;
                }
                finished = Some(open.pop().expect("checked above").close()?);
            }
        }
    }
}

/// A container being built: its children's ids and the values built from them so far.
struct Open {
    kind: Kind,
    /// Children in order; a dict's are flattened as key, value, key, value, ...
    children: Vec<Id>,
    built: Vec<Value>,
}

#[derive(Clone, Copy)]
enum Kind {
    Tuple,
    List,
    Dict,
    Set,
    FrozenSet,
}

impl Open {
    fn new(obj: &Obj) -> Open {
        let (kind, children) = match obj {
            Obj::Tuple(ids) => (Kind::Tuple, ids.clone()),
            Obj::List(ids) => (Kind::List, ids.clone()),
            Obj::Set(ids) => (Kind::Set, ids.clone()),
            Obj::FrozenSet(ids) => (Kind::FrozenSet, ids.clone()),
            Obj::Dict(pairs) => (Kind::Dict, pairs.iter().flat_map(|(k, v)| [*k, *v]).collect()),
            Obj::Leaf(_) => unreachable!("leaves are never opened"),
        };
        Open { kind, built: Vec::with_capacity(children.len()), children }
    }

    fn close(self) -> Result<Value, DecodeErrorKind> {
        Ok(match self.kind {
            Kind::Tuple => Value::Tuple(self.built),
            Kind::List => Value::List(self.built),
            Kind::Set => Value::Set(unique(self.built)?),
            Kind::FrozenSet => Value::FrozenSet(unique(self.built)?),
            Kind::Dict => {
                // Python dict semantics: a repeated key keeps its first place, last value.
                let mut out: Vec<(Value, Value)> = Vec::with_capacity(self.built.len() / 2);
                let mut index: HashMap<Value, usize> = HashMap::with_capacity(self.built.len() / 2);
                let mut items = self.built.into_iter();
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    if !key.is_hashable() {
                        return Err(malformed(format!("unhashable type: '{}' used as a dict key", key.type_name())));
                    }
                    match index.get(&key) {
                        Some(&i) => out[i].1 = value,
                        None => {
                            index.insert(key.clone(), out.len());
                            out.push((key, value));
                        }
                    }
                }
                Value::Dict(out)
            }
        })
    }
}

fn pairs_of(items: Vec<Id>) -> Result<Vec<(Id, Id)>, DecodeErrorKind> {
    if items.len() % 2 != 0 {
        return Err(malformed("odd number of items for a dict"));
    }
    Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

/// Set semantics: unhashable members refused, duplicates dropped, first order kept.
fn unique(items: Vec<Value>) -> Result<Vec<Value>, DecodeErrorKind> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if !item.is_hashable() {
            return Err(malformed(format!("unhashable type: '{}' in a set", item.type_name())));
        }
        if seen.insert(item.clone()) {
            out.push(item);
        }
    }
    Ok(out)
}

fn parse_int(text: &[u8]) -> Result<Value, DecodeErrorKind> {
    let t = std::str::from_utf8(text).map_err(|_| malformed("bad INT text"))?.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!("bad INT text {t:?}")));
    }
    Ok(match t.parse::<i64>() {
        Ok(i) => Value::Int(i),
        Err(_) => Value::BigInt(t.trim_start_matches('+').to_owned()),
    })
}

/// LONG1/LONG4: little-endian two's complement of any length.
fn long_from_le(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 16 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 16] } else { [0u8; 16] };
        buf[..bytes.len()].copy_from_slice(bytes);
        let n = i128::from_le_bytes(buf);
        return match i64::try_from(n) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::BigInt(n.to_string()),
        };
    }
    // Never sent by this protocol; rendering it in decimal would cost quadratic time.
    Value::BigInt(format!("<{}-byte int>", bytes.len()))
}

/// Python 3 reads protocol-0/1 8-bit strings as ASCII `str` (`encoding='ASCII'`).
fn ascii_str(bytes: Vec<u8>) -> Result<String, DecodeErrorKind> {
    if !bytes.is_ascii() {
        return Err(malformed("8-bit string is not ASCII"));
    }
    Ok(String::from_utf8(bytes).expect("ASCII is UTF-8"))
}

/// The STRING opcode's argument: a Python 2 string literal in single or double quotes.
fn unquote_py2_string(text: &[u8]) -> Result<Vec<u8>, DecodeErrorKind> {
    let bad = || malformed("bad STRING literal");
    let quote = *text.first().ok_or_else(bad)?;
    if !(quote == b'\'' || quote == b'"') || text.len() < 2 || text[text.len() - 1] != quote {
        return Err(bad());
    }
    let body = &text[1..text.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = *body.get(i).ok_or_else(bad)?;
        i += 1;
        match e {
            b'\\' | b'\'' | b'"' => out.push(e),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'v' => out.push(0x0b),
            b'\n' => {}
            b'x' => {
                let hex = body.get(i..i + 2).ok_or_else(bad)?;
                let s = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(s, 16).map_err(|_| bad())?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                let mut n = 1;
                while n < 3 && i < body.len() && (b'0'..=b'7').contains(&body[i]) {
                    v = v * 8 + u32::from(body[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// The UNICODE opcode's argument: Latin-1 text with `\uXXXX` and `\UXXXXXXXX` escapes.
fn raw_unicode_escape(text: &[u8]) -> Result<String, DecodeErrorKind> {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        let width = match (b, text.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => {
                out.push(char::from(b));
                i += 1;
                continue;
            }
        };
        let hex = text.get(i + 2..i + 2 + width).ok_or_else(|| malformed("truncated \\u escape"))?;
        let code = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32)
            .ok_or_else(|| malformed("bad \\u escape"))?;
        out.push(code);
        i += 2 + width;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(bytes: &[u8]) -> Value {
        decode(bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn memoized_list_sees_later_appends() {
        // x = []; pickle.dumps((x, x), 2) after x.append(1) builds the list once, then
        // refers to it: EMPTY_LIST BINPUT 0 BININT1 1 APPEND BINGET 0 TUPLE2 STOP.
        let v = ok(b"\x80\x02]q\x00K\x01ah\x00\x86q\x01.");
        let one = Value::List(vec![Value::Int(1)]);
        assert_eq!(v, Value::Tuple(vec![one.clone(), one]));
    }

    #[test]
    fn self_reference_is_too_deep_not_a_hang() {
        // l = []; l.append(l); pickle.dumps(l, 2)
        let err = decode(b"\x80\x02]q\x00h\x00a.").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TooDeep);
    }

    #[test]
    fn dict_keys_follow_python_rules() {
        // {1: 'a', 1: 'b'} written twice through SETITEM keeps one key, last value.
        let v = ok(b"\x80\x02}K\x01X\x01\x00\x00\x00asK\x01X\x01\x00\x00\x00bs.");
        assert_eq!(v, Value::Dict(vec![(Value::Int(1), Value::str("b"))]));
        // A list as a key is refused, as Python refuses it.
        let err = decode(b"\x80\x02}]K\x01s.").unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::Malformed(ref m) if m.contains("unhashable")));
    }

    #[test]
    fn refuses_object_construction() {
        // pickle.dumps(print) at protocol 0 is a GLOBAL.
        let err = decode(b"cbuiltins\nprint\np0\n.").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Refused("GLOBAL"));
    }

    #[test]
    fn truncation_is_distinct_from_garbage() {
        let err = decode(b"\x80\x04\x95").unwrap_err();
        assert!(err.is_truncated());
        let err = decode(b"\x80\x02\xff").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownOpcode(0xff));
        let err = decode(b"\x80\x07N.").unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::Malformed(_)));
    }

    #[test]
    fn protocol_zero_scalars() {
        assert_eq!(ok(b"I01\n."), Value::Bool(true));
        assert_eq!(ok(b"I-42\n."), Value::Int(-42));
        assert_eq!(ok(b"L123456789012345678901234567890L\n."), Value::BigInt("123456789012345678901234567890".into()));
        assert_eq!(ok(b"S'a\\'b\\x41'\np0\n."), Value::str("a'bA"));
        assert_eq!(ok(b"Vcaf\xe9 \\u263a\n."), Value::str("café ☺"));
        assert_eq!(ok(b"F1.5\n."), Value::Float(1.5));
    }

    #[test]
    fn long1_edges() {
        assert_eq!(ok(b"\x80\x02\x8a\x01\xff."), Value::Int(-1));
        assert_eq!(ok(b"\x80\x02\x8a\x00."), Value::Int(0));
        assert_eq!(
            ok(b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01."),
            Value::BigInt("18446744073709551616".into())
        );
    }
}
