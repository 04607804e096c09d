//! The inputs that abort serde-pickle (PROTOCOL.md) come back from our decoder as
//! errors, on a small thread stack, with allocation bounded by a small multiple of the
//! input. A counting global allocator measures the peak bytes the decoding thread holds
//! during each decode.

use bully_node::wire::{decode, read_pickle, DecodeErrorKind, FrameError, Value, MAX_PICKLE_BYTES};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

struct Counting;

thread_local! {
    /// Bytes this thread has allocated and not freed, and their peak since the last
    /// [`start_measuring`]. Per thread, so that what other tests (or the harness) allocate
    /// at the same time never counts in a decode's peak. A const-initialised Cell needs no
    /// allocation and no destructor, so the allocator may touch it.
    static COUNTS: Cell<(isize, isize)> = const { Cell::new((0, 0)) };
}

fn count(delta: isize) {
    let _ = COUNTS.try_with(|c| {
        let (live, peak) = c.get();
        c.set((live + delta, peak.max(live + delta)));
    });
}

/// Starts a peak measurement on this thread; returns the bytes live now.
fn start_measuring() -> isize {
    COUNTS.with(|c| {
        let (live, _) = c.get();
        c.set((live, live));
        live
    })
}

/// The most bytes this thread held above `base` since [`start_measuring`].
fn peak_above(base: isize) -> usize {
    COUNTS.with(|c| (c.get().1 - base).max(0) as usize)
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts bytes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        count(-(layout.size() as isize));
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes a decode may hold at its peak: every opcode may become an arena entry and a
/// 32-byte value, plus the stack and memo; 96 per input byte covers that with room.
const BYTES_PER_INPUT_BYTE: usize = 96;
const FIXED_ALLOWANCE: usize = 64 * 1024;

/// A thread stack far smaller than the main thread's 8 MiB.
const SMALL_STACK: usize = 64 * 1024;

/// Decodes on a small-stack thread and returns the result with the peak bytes
/// allocated above what was live before it started.
fn decode_measured(input: Vec<u8>) -> (Result<Value, bully_node::wire::DecodeError>, usize) {
    let handle = std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(move || {
            let base = start_measuring();
            let result = decode(&input);
            (result, peak_above(base))
        })
        .unwrap();
    handle.join().expect("decoding must not crash its thread")
}

fn assert_bounded(name: &str, input_len: usize, peak: usize) {
    let bound = BYTES_PER_INPUT_BYTE * input_len + FIXED_ALLOWANCE;
    println!("{name}: {input_len} input bytes, peak {peak} bytes allocated (bound {bound})");
    assert!(peak <= bound, "{name}: peak {peak} > {bound}");
}

#[test]
fn ten_thousand_nested_lists_are_too_deep_not_a_stack_overflow() {
    // pickle.dumps of a list nested 10,000 deep at protocol 2: EMPTY_LIST and APPEND.
    let mut p = b"\x80\x02".to_vec();
    p.extend(std::iter::repeat_n(b']', 10_000));
    p.extend(std::iter::repeat_n(b'a', 9_999));
    p.push(b'.');
    let len = p.len();
    let (result, peak) = decode_measured(p);
    assert_eq!(result.unwrap_err().kind, DecodeErrorKind::TooDeep);
    assert_bounded("nested lists", len, peak);

    // The same depth with MARK ... LIST (protocol 0 style).
    let mut p = vec![b'('; 10_000];
    p.extend(std::iter::repeat_n(b'l', 10_000));
    p.push(b'.');
    let len = p.len();
    let (result, peak) = decode_measured(p);
    assert_eq!(result.unwrap_err().kind, DecodeErrorKind::TooDeep);
    assert_bounded("nested MARK lists", len, peak);
}

#[test]
fn dup_bomb_is_refused_without_expanding() {
    // x = []; then 40 times: x = (x, x) via DUP TUPLE2: 2**40 leaves from 83 bytes.
    let mut p = b"\x80\x02]".to_vec();
    for _ in 0..40 {
        p.extend_from_slice(b"2\x86");
    }
    p.push(b'.');
    let len = p.len();
    let (result, peak) = decode_measured(p);
    // Depth 41 is reached before the size budget: either limit is a refusal.
    let kind = result.unwrap_err().kind;
    assert!(matches!(kind, DecodeErrorKind::TooLarge | DecodeErrorKind::TooDeep), "{kind:?}");
    assert_bounded("DUP bomb", len, peak);
}

#[test]
fn memo_bomb_is_refused_without_expanding() {
    // A 20-level tree where each level is (prev, prev, prev) through BINPUT/BINGET:
    // shallow enough for MAX_DEPTH, 3**20 leaves from about 200 bytes.
    let mut p = b"\x80\x02N".to_vec();
    for _ in 0..20 {
        p.extend_from_slice(b"q\x00h\x00h\x00\x87");
    }
    p.push(b'.');
    let len = p.len();
    let (result, peak) = decode_measured(p);
    assert_eq!(result.unwrap_err().kind, DecodeErrorKind::TooLarge);
    assert_bounded("memo bomb", len, peak);

    // One 4 KiB string referenced 4,000 times: 16 MB of text from 12 KB of input.
    let mut p = b"\x80\x02(X\x00\x10\x00\x00".to_vec();
    p.extend(std::iter::repeat_n(b'a', 4096));
    p.extend_from_slice(b"q\x00");
    for _ in 0..4000 {
        p.extend_from_slice(b"h\x00");
    }
    p.extend_from_slice(b"l.");
    let len = p.len();
    let (result, peak) = decode_measured(p);
    assert_eq!(result.unwrap_err().kind, DecodeErrorKind::TooLarge);
    assert_bounded("string memo bomb", len, peak);
}

#[test]
fn lying_lengths_end_in_truncation_without_allocating() {
    for p in [
        b"\x80\x02X\xff\xff\xff\x7fab".to_vec(),
        b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xffab".to_vec(),
        b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xff\x8c\x05PROBE".to_vec(),
        b"\x80\x02\x8b\xff\xff\xff\x7f\x01".to_vec(),
    ] {
        let len = p.len();
        let (result, peak) = decode_measured(p);
        assert!(result.unwrap_err().is_truncated());
        assert_bounded("lying length", len, peak);
    }
}

#[test]
fn a_legitimately_large_pickle_decodes_within_the_bound() {
    // A list of 20,000 small ints: big, flat and valid.
    let mut p = b"\x80\x02](".to_vec();
    for i in 0..20_000u32 {
        p.push(b'K');
        p.push((i % 256) as u8);
    }
    p.extend_from_slice(b"e.");
    let len = p.len();
    let (result, peak) = decode_measured(p);
    match result.unwrap() {
        Value::List(items) => assert_eq!(items.len(), 20_000),
        other => panic!("{other:?}"),
    }
    assert_bounded("large flat list", len, peak);
}

#[test]
fn random_bytes_never_panic() {
    // Its allocations would count in the peak of a measured case running meanwhile.
    // A fixed-seed xorshift stream: 20,000 inputs of 0-64 bytes, half of them starting
    // with a protocol header so that they get past the first opcode.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut decoded = 0;
    for n in 0..20_000 {
        let len = (next() % 65) as usize;
        let mut p: Vec<u8> = if n % 2 == 0 { vec![0x80, (next() % 6) as u8] } else { vec![] };
        p.extend((0..len).map(|_| next() as u8));
        if decode(&p).is_ok() {
            decoded += 1;
        }
        let _ = read_pickle(&mut &p[..], MAX_PICKLE_BYTES);
    }
    // Some random inputs are valid pickles (e.g. "N."); most are not.
    assert!(decoded < 20_000);
}

#[test]
fn framing_refuses_oversize_and_endless_lines() {
    // Its 100 kB line would count in the peak of a measured case running meanwhile.
    let mut line = b"I".to_vec();
    line.extend(std::iter::repeat_n(b'1', 100_000));
    match read_pickle(&mut &line[..], MAX_PICKLE_BYTES) {
        Err(FrameError::Invalid { reason, .. }) => assert!(reason.contains("longer than")),
        other => panic!("{other:?}"),
    }
}

/// A small deterministic generator for the campaign (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn golden_files() -> Vec<Vec<u8>> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pickle"))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = if v.is_empty() { 0 } else { rng.below(v.len()) };
        match rng.below(6) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at, rng.next() as u8),
            2 if !v.is_empty() => drop(v.remove(at)),
            3 => v.truncate(at),
            4 if !v.is_empty() => {
                let len = rng.below(v.len() - at + 1).min(64);
                let copy = v[at..at + len].to_vec();
                v.splice(at..at, copy);
            }
            _ => {
                let from = rng.below(other.len());
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
        }
    }
    v
}

/// Opcode sequences from a grammar that tracks the stack: pushes, nested MARKs closed
/// as tuples, lists or frozensets, TUPLE1-3, DUP, memo writes and reads of slots that
/// were written, containers filled with APPEND/SETITEMS. Most come out valid and deeply
/// shared; the rest fail in the machine, which is the point too.
fn generated(rng: &mut Rng) -> Vec<u8> {
    let mut v = vec![0x80, 2 + rng.below(4) as u8, b'('];
    let mut count = 0usize; // items above the innermost MARK
    let mut outer: Vec<usize> = Vec::new(); // counts below each inner MARK
    let mut memo: Vec<u8> = Vec::new();
    for _ in 0..rng.below(400) {
        match rng.below(16) {
            0 => {
                v.push(b'N');
                count += 1;
            }
            1 => {
                v.extend_from_slice(&[b'K', rng.next() as u8]);
                count += 1;
            }
            2 => {
                let len = rng.below(12);
                v.extend_from_slice(&[0x8c, len as u8]);
                v.extend((0..len).map(|_| b'a' + rng.below(26) as u8));
                count += 1;
            }
            3 if outer.len() < 60 => {
                v.push(b'(');
                outer.push(count);
                count = 0;
            }
            4 if !outer.is_empty() => {
                v.push([b't', b'l', 0x91][rng.below(3)]);
                count = outer.pop().unwrap() + 1;
            }
            5 if count >= 1 => {
                let n = 1 + rng.below(count.min(3));
                v.push(0x84 + n as u8);
                count -= n - 1;
            }
            6 if count >= 1 => {
                v.push(b'2');
                count += 1;
            }
            7 if count >= 1 => {
                let slot = rng.below(16) as u8;
                v.extend_from_slice(&[b'q', slot]);
                memo.push(slot);
            }
            8 if !memo.is_empty() => {
                v.extend_from_slice(&[b'h', memo[rng.below(memo.len())]]);
                count += 1;
            }
            9 => {
                // A list filled from a MARK: ] ( items e
                v.extend_from_slice(b"](");
                for _ in 0..rng.below(4) {
                    v.extend_from_slice(&[b'K', rng.next() as u8]);
                }
                v.push(b'e');
                count += 1;
            }
            10 => {
                // A dict with str keys: } ( k v ... u
                v.extend_from_slice(b"}(");
                for k in 0..rng.below(4) {
                    v.extend_from_slice(&[0x8c, 1, b'a' + k as u8, b'N']);
                }
                v.push(b'u');
                count += 1;
            }
            11 if count >= 1 => {
                v.push(b'0');
                count -= 1;
            }
            12 => {
                v.push(0x94);
                if count >= 1 {
                    memo.push(0); // MEMOIZE's slot is not a byte we know; reads of 0 may fail
                }
            }
            _ => {}
        }
    }
    while outer.pop().is_some() {
        v.push(b't');
    }
    v.extend_from_slice(b"t.");
    v
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let leaf = depth == 0 || rng.below(3) == 0;
    match if leaf { rng.below(5) } else { 5 + rng.below(4) } {
        0 => Value::None,
        1 => Value::Bool(rng.below(2) == 1),
        2 => Value::Int(rng.next() as i64 >> rng.below(64)),
        3 => Value::str(["", "127.0.0.1", "localhost", "café ☺", "ELECT"][rng.below(5)]),
        4 => Value::Float(rng.below(1000) as f64 / 8.0),
        5 => Value::Tuple((0..rng.below(5)).map(|_| random_value(rng, depth - 1)).collect()),
        6 => Value::List((0..rng.below(5)).map(|_| random_value(rng, depth - 1)).collect()),
        _ => {
            let mut pairs: Vec<(Value, Value)> = Vec::new();
            for i in 0..rng.below(5) {
                let key = Value::tuple([Value::Int(i as i64), Value::str("k")]);
                pairs.push((key, random_value(rng, depth - 1)));
            }
            Value::Dict(pairs)
        }
    }
}

/// The campaign CI runs: FUZZ_ITERS inputs per strategy (default 20,000; the README
/// says how to run a long one). No input may panic, abort or allocate past the bound.
#[test]
fn fuzz_campaign() {
    let iters: usize = std::env::var("FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let goldens = golden_files();
    assert!(goldens.len() > 100);
    let mut rng = Rng(seed | 1);
    let (mut decoded, mut worst_ratio, started) = (0usize, 0f64, Instant::now());
    for i in 0..3 * iters {
        let input = match i % 3 {
            0 => {
                let mut v = vec![0x80, rng.below(6) as u8];
                v.extend((0..rng.below(80)).map(|_| rng.next() as u8));
                v
            }
            1 => {
                let (a, b) = (rng.below(goldens.len()), rng.below(goldens.len()));
                mutate(&mut rng, &goldens[a], &goldens[b])
            }
            _ => generated(&mut rng),
        };
        let base = start_measuring();
        let result = decode(&input);
        let peak = peak_above(base);
        let _ = read_pickle(&mut &input[..], MAX_PICKLE_BYTES);
        assert!(
            peak <= BYTES_PER_INPUT_BYTE * input.len() + FIXED_ALLOWANCE,
            "input {i} (seed {seed}) of {} bytes allocated {peak}: {input:02x?}",
            input.len()
        );
        if input.len() >= 256 {
            worst_ratio = worst_ratio.max(peak as f64 / input.len() as f64);
        }
        decoded += usize::from(result.is_ok());
    }
    // Round trip: random values come back from both encoder styles unchanged.
    for _ in 0..iters {
        let v = random_value(&mut rng, 6);
        for style in [bully_node::wire::Style::Compact, bully_node::wire::Style::CPython] {
            assert_eq!(decode(&bully_node::wire::encode(&v, style)).unwrap(), v);
        }
    }
    println!(
        "{} inputs ({iters} per strategy, seed {seed}): {decoded} decoded, the rest refused; at most {worst_ratio:.0} bytes \
         allocated per input byte (inputs of 256 bytes or more); {iters} round trips; {:?}",
        3 * iters,
        started.elapsed()
    );
    assert!(decoded > iters / 10, "the campaign must reach valid pickles too ({decoded})");
}
