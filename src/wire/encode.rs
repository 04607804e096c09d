//! Pickling [`Value`]s so that CPython's `pickle.loads` builds exactly the objects a
//! Python peer would have built: tuples as tuples, `str` as `str`, dicts in order.
//!
//! Why not `serde_pickle::to_vec`: it writes protocol 3 with no memo, so a host name is
//! repeated in full for every member and a 50-member ELECT takes ~1560 bytes, past the
//! single `recv(1024)` every Python peer reads with. Two styles are written here:
//!
//! - [`Style::Compact`], for everything we send to peers: protocol-4 opcodes
//!   (SHORT_BINUNICODE, MEMOIZE) without a FRAME, and only strings that occur more than
//!   once are memoized and referred back to. A 50-member ELECT on one host is ~770
//!   bytes, under CPython's own 836, so groups of about 60 fit in 1024 bytes.
//! - [`Style::CPython`], for the coordinator's replies: byte-for-byte what CPython 3.8+
//!   writes for `pickle.dumps(value)` when no object is shared (every str, tuple and
//!   dict memoized, one FRAME), so our GCD answers exactly as gcd2.py does.

use super::opcodes as op;
use super::Value;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Compact,
    CPython,
}

/// CPython batches APPENDS/SETITEMS/ADDITEMS by this many items.
const BATCH: usize = 1000;
/// CPython writes a FRAME header only around at least this many bytes.
const FRAME_MIN: usize = 4;

/// Pickles `value` in the given style.
pub fn encode(value: &Value, style: Style) -> Vec<u8> {
    let mut w = Writer { out: Vec::with_capacity(128), style, memo_len: 0, shared: HashMap::new() };
    if style == Style::Compact {
        let mut counts = HashMap::new();
        count_strings(value, &mut counts);
        w.shared = counts.into_iter().filter(|(_, n)| *n > 1).map(|(s, _)| (s, None)).collect();
    }
    w.out.extend_from_slice(&[op::PROTO, 4]);
    let body_start = w.out.len();
    w.value(value);
    w.out.push(op::STOP);
    if style == Style::CPython && w.out.len() - body_start >= FRAME_MIN {
        let len = (w.out.len() - body_start) as u64;
        let mut header = vec![op::FRAME];
        header.extend_from_slice(&len.to_le_bytes());
        w.out.splice(body_start..body_start, header);
    }
    w.out
}

fn count_strings<'a>(value: &'a Value, counts: &mut HashMap<&'a str, usize>) {
    match value {
        Value::Str(s) => *counts.entry(s.as_str()).or_default() += 1,
        Value::Tuple(items) | Value::List(items) | Value::Set(items) | Value::FrozenSet(items) => {
            items.iter().for_each(|v| count_strings(v, counts))
        }
        Value::Dict(pairs) => pairs.iter().for_each(|(k, v)| {
            count_strings(k, counts);
            count_strings(v, counts);
        }),
        _ => {}
    }
}

struct Writer<'a> {
    out: Vec<u8>,
    style: Style,
    memo_len: u32,
    /// Compact style: repeated strings, with their memo index once written.
    shared: HashMap<&'a str, Option<u32>>,
}

impl<'a> Writer<'a> {
    fn memoize(&mut self) -> u32 {
        self.out.push(op::MEMOIZE);
        self.memo_len += 1;
        self.memo_len - 1
    }

    /// Memoizes a container in CPython style (compact style shares only strings).
    fn memoize_container(&mut self) {
        if self.style == Style::CPython {
            self.memoize();
        }
    }

    fn counted(&mut self, short: u8, long: u8, huge: u8, bytes: &[u8]) {
        if bytes.len() < 256 {
            self.out.extend_from_slice(&[short, bytes.len() as u8]);
        } else if let Ok(n) = u32::try_from(bytes.len()) {
            self.out.push(long);
            self.out.extend_from_slice(&n.to_le_bytes());
        } else {
            self.out.push(huge);
            self.out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        }
        self.out.extend_from_slice(bytes);
    }

    fn int(&mut self, i: i64) {
        match i {
            0..=0xff => self.out.extend_from_slice(&[op::BININT1, i as u8]),
            0x100..=0xffff => {
                self.out.push(op::BININT2);
                self.out.extend_from_slice(&(i as u16).to_le_bytes());
            }
            _ if i32::try_from(i).is_ok() => {
                self.out.push(op::BININT);
                self.out.extend_from_slice(&(i as i32).to_le_bytes());
            }
            _ => {
                // LONG1 with the fewest two's-complement bytes, as CPython writes it.
                let bytes = i.to_le_bytes();
                let mut n = 8;
                while n > 1 {
                    let top = bytes[n - 1];
                    let next_sign = bytes[n - 2] & 0x80;
                    if (top == 0 && next_sign == 0) || (top == 0xff && next_sign != 0) {
                        n -= 1;
                    } else {
                        break;
                    }
                }
                self.out.extend_from_slice(&[op::LONG1, n as u8]);
                self.out.extend_from_slice(&bytes[..n]);
            }
        }
    }

    fn string(&mut self, s: &'a str) {
        if self.style == Style::Compact {
            if let Some(slot) = self.shared.get(s).copied() {
                match slot {
                    Some(index) => self.get(index),
                    None => {
                        self.counted(op::SHORT_BINUNICODE, op::BINUNICODE, op::BINUNICODE8, s.as_bytes());
                        let index = self.memoize();
                        self.shared.insert(s, Some(index));
                    }
                }
                return;
            }
            self.counted(op::SHORT_BINUNICODE, op::BINUNICODE, op::BINUNICODE8, s.as_bytes());
        } else {
            self.counted(op::SHORT_BINUNICODE, op::BINUNICODE, op::BINUNICODE8, s.as_bytes());
            self.memoize();
        }
    }

    fn get(&mut self, index: u32) {
        if index < 256 {
            self.out.extend_from_slice(&[op::BINGET, index as u8]);
        } else {
            self.out.push(op::LONG_BINGET);
            self.out.extend_from_slice(&index.to_le_bytes());
        }
    }

    /// Items in CPython's batches: one item alone uses `single`, more go as
    /// MARK ... `batch` in groups of [`BATCH`].
    fn batched<T>(&mut self, items: &'a [T], single: Option<u8>, batch: u8, each: impl Fn(&mut Self, &'a T)) {
        if let (Some(single), [only]) = (single, items) {
            each(self, only);
            self.out.push(single);
            return;
        }
        for chunk in items.chunks(BATCH) {
            self.out.push(op::MARK);
            chunk.iter().for_each(|item| each(self, item));
            self.out.push(batch);
        }
    }

    fn value(&mut self, value: &'a Value) {
        match value {
            Value::None => self.out.push(op::NONE),
            Value::Bool(b) => self.out.push(if *b { op::NEWTRUE } else { op::NEWFALSE }),
            Value::Int(i) => self.int(*i),
            Value::BigInt(digits) => {
                // Not produced by this crate; sent as protocol-0 LONG text, which any
                // unpickler reads back as the same int.
                self.out.push(op::LONG);
                self.out.extend_from_slice(digits.as_bytes());
                self.out.extend_from_slice(b"L\n");
            }
            Value::Float(x) => {
                self.out.push(op::BINFLOAT);
                self.out.extend_from_slice(&x.to_bits().to_be_bytes());
            }
            Value::Str(s) => self.string(s),
            Value::Bytes(b) => {
                self.counted(op::SHORT_BINBYTES, op::BINBYTES, op::BINBYTES8, b);
                self.memoize_container();
            }
            Value::ByteArray(b) => {
                self.out.push(op::BYTEARRAY8);
                self.out.extend_from_slice(&(b.len() as u64).to_le_bytes());
                self.out.extend_from_slice(b);
                self.memoize_container();
            }
            Value::Tuple(items) => {
                match items.len() {
                    0 => {
                        self.out.push(op::EMPTY_TUPLE);
                        return; // CPython never memoizes the empty tuple
                    }
                    1..=3 => {
                        items.iter().for_each(|v| self.value(v));
                        self.out.push(op::TUPLE1 + items.len() as u8 - 1);
                    }
                    _ => {
                        self.out.push(op::MARK);
                        items.iter().for_each(|v| self.value(v));
                        self.out.push(op::TUPLE);
                    }
                }
                self.memoize_container();
            }
            Value::List(items) => {
                self.out.push(op::EMPTY_LIST);
                self.memoize_container();
                self.batched(items, Some(op::APPEND), op::APPENDS, |w, v| w.value(v));
            }
            Value::Dict(pairs) => {
                self.out.push(op::EMPTY_DICT);
                self.memoize_container();
                self.batched(pairs, Some(op::SETITEM), op::SETITEMS, |w, (k, v)| {
                    w.value(k);
                    w.value(v);
                });
            }
            Value::Set(items) => {
                self.out.push(op::EMPTY_SET);
                self.memoize_container();
                self.batched(items, None, op::ADDITEMS, |w, v| w.value(v));
            }
            Value::FrozenSet(items) => {
                self.out.push(op::MARK);
                items.iter().for_each(|v| self.value(v));
                self.out.push(op::FROZENSET);
                self.memoize_container();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decode;

    fn sample() -> Value {
        Value::tuple([
            Value::str("ELECT"),
            Value::Dict(
                (0..3)
                    .map(|i| {
                        (
                            Value::tuple([Value::Int(10 + i), Value::Int(1_000_000 + i)]),
                            Value::tuple([Value::str("127.0.0.1"), Value::Int(40_000 + i)]),
                        )
                    })
                    .collect(),
            ),
        ])
    }

    #[test]
    fn both_styles_decode_back_to_the_same_value() {
        let v = sample();
        for style in [Style::Compact, Style::CPython] {
            assert_eq!(decode(&encode(&v, style)).unwrap(), v, "{style:?}");
        }
    }

    #[test]
    fn compact_writes_a_repeated_host_once() {
        let bytes = encode(&sample(), Style::Compact);
        let hits = bytes.windows(9).filter(|w| *w == b"127.0.0.1").count();
        assert_eq!(hits, 1);
        assert!(bytes.len() < encode(&sample(), Style::CPython).len());
    }

    #[test]
    fn ints_use_the_smallest_opcode() {
        for (i, want) in [
            (0i64, vec![op::BININT1, 0]),
            (300, vec![op::BININT2, 0x2c, 0x01]),
            (-1, vec![op::BININT, 0xff, 0xff, 0xff, 0xff]),
            (1 << 40, vec![op::LONG1, 6, 0, 0, 0, 0, 0, 1]),
            (-(1 << 40), vec![op::LONG1, 6, 0, 0, 0, 0, 0, 0xff]),
        ] {
            let bytes = encode(&Value::Int(i), Style::Compact);
            assert_eq!(&bytes[2..bytes.len() - 1], &want[..], "{i}");
            assert_eq!(decode(&bytes).unwrap(), Value::Int(i));
        }
    }
}
