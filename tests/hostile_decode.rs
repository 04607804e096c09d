//! The inputs that abort serde-pickle (PROTOCOL.md) come back from our decoder as
//! errors, on a small thread stack, with allocation bounded by a small multiple of the
//! input. A counting global allocator measures the peak bytes live during each decode.

use bully_node::wire::{decode, read_pickle, DecodeErrorKind, FrameError, Value, MAX_PICKLE_BYTES};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Peak measurements are global, so the cases run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Bytes a decode may hold at its peak: every opcode may become an arena entry and a
/// 32-byte value, plus the stack and memo; 96 per input byte covers that with room.
const BYTES_PER_INPUT_BYTE: usize = 96;
const FIXED_ALLOWANCE: usize = 64 * 1024;

/// A thread stack far smaller than the main thread's 8 MiB.
const SMALL_STACK: usize = 64 * 1024;

/// Decodes on a small-stack thread and returns the result with the peak bytes
/// allocated above what was live before it started.
fn decode_measured(input: Vec<u8>) -> (Result<Value, bully_node::wire::DecodeError>, usize) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let handle = std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(move || {
            let base = LIVE.load(Relaxed);
            PEAK.store(base, Relaxed);
            let result = decode(&input);
            (result, PEAK.load(Relaxed) - base)
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
    let mut line = b"I".to_vec();
    line.extend(std::iter::repeat_n(b'1', 100_000));
    match read_pickle(&mut &line[..], MAX_PICKLE_BYTES) {
        Err(FrameError::Invalid { reason, .. }) => assert!(reason.contains("longer than")),
        other => panic!("{other:?}"),
    }
}
