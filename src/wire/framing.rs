//! Finding where one pickle ends, and reading exactly one from a stream.
//!
//! Python peers keep the connection open while they wait for our reply, so a reader
//! must stop at the STOP opcode instead of waiting for EOF, and must not ask the socket
//! for bytes past it. The [`Framer`] walks opcode lengths without building any value
//! and says how many more bytes the pickle needs at least; [`read_pickle`] asks the
//! reader for exactly that many, so it never reads past STOP.

use super::opcodes::{self, Arg};
use std::fmt;
use std::io::{self, Read};

/// The largest pickle we accept from a peer. Python peers can't read past 1024 bytes
/// (one `recv(1024)`); our own compact ELECT for 1,000 members is about 15 KiB. 64 KiB
/// leaves room for any real group and bounds what a hostile sender costs us.
pub const MAX_PICKLE_BYTES: usize = 64 * 1024;

/// The longest text argument of a protocol-0 opcode (an int, a float, a memo index, a
/// string literal). Lines are scanned a byte at a time; the cap keeps a newline-free
/// flood from costing quadratic work. Real protocol-0 lines here are under 300 bytes.
pub const MAX_LINE_BYTES: usize = 4096;

/// Why bytes are not (yet) one pickle.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended before STOP: a valid start of a pickle, cut short.
    Incomplete { received: usize },
    /// A byte that no pickle could contain at that place.
    Invalid { offset: usize, reason: String },
    /// The pickle is longer than the cap.
    TooLarge { limit: usize },
    /// The reader failed, including a read timeout (`TimedOut`/`WouldBlock`).
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Incomplete { received: 0 } => write!(f, "connection closed with no data"),
            FrameError::Incomplete { received } => {
                write!(f, "incomplete pickle: stream ended after {received} bytes, before STOP")
            }
            FrameError::Invalid { offset, reason } => {
                write!(f, "not a pickle: {reason} at byte {offset}")
            }
            FrameError::TooLarge { limit } => write!(f, "pickle longer than {limit} bytes"),
            FrameError::Io(e) if is_timeout(e) => write!(f, "timed out waiting for data"),
            FrameError::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Whether an I/O error is a socket read/write timeout (Linux reports `WouldBlock`).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

/// What the bytes seen so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// One whole pickle occupies the first `len` bytes.
    Complete { len: usize },
    /// At least this many more bytes are needed before anything can be decided.
    NeedMore(usize),
}

/// Incremental scan for the STOP opcode; resumable as bytes arrive.
#[derive(Debug, Default)]
pub struct Framer {
    /// Offset of the next opcode not yet scanned.
    pos: usize,
    /// End of the current protocol-4 frame, when we are inside one.
    frame_end: usize,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans `buf` (all bytes received so far, from the pickle's start) onward from
    /// where the last call stopped.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Progress, FrameError> {
        loop {
            let Some(&op) = buf.get(self.pos) else {
                return Ok(Progress::NeedMore(self.want(buf.len(), self.pos + 1)));
            };
            let arg = opcodes::arg_of(op).ok_or_else(|| FrameError::Invalid {
                offset: self.pos,
                reason: format!("unknown opcode 0x{op:02x}"),
            })?;
            let start = self.pos + 1;
            let end = match arg {
                Arg::None => start,
                Arg::Fixed(n) => start + n,
                Arg::Line | Arg::TwoLines => {
                    let lines = if arg == Arg::Line { 1 } else { 2 };
                    let text = &buf[start.min(buf.len())..];
                    match nth_newline(text, lines) {
                        Some(i) => start + i + 1,
                        None if text.len() > lines * MAX_LINE_BYTES => {
                            return Err(FrameError::Invalid {
                                offset: self.pos,
                                reason: format!("text argument longer than {MAX_LINE_BYTES} bytes"),
                            })
                        }
                        None => return Ok(Progress::NeedMore(1)),
                    }
                }
                Arg::Counted(width) => {
                    let Some(len_bytes) = buf.get(start..start + width) else {
                        return Ok(Progress::NeedMore(self.want(buf.len(), start + width)));
                    };
                    let len = le_uint(len_bytes);
                    if op == opcodes::BINSTRING && len > i32::MAX as u64 {
                        return Err(FrameError::Invalid {
                            offset: self.pos,
                            reason: "negative BINSTRING length".into(),
                        });
                    }
                    match usize::try_from(len).ok().and_then(|l| (start + width).checked_add(l)) {
                        Some(end) => end,
                        None => return Err(FrameError::TooLarge { limit: MAX_PICKLE_BYTES }),
                    }
                }
            };
            if end > buf.len() {
                return Ok(Progress::NeedMore(self.want(buf.len(), end)));
            }
            if op == opcodes::FRAME {
                let frame_len = usize::try_from(le_uint(&buf[start..end])).unwrap_or(usize::MAX);
                self.frame_end = end.saturating_add(frame_len);
            }
            self.pos = end;
            if op == opcodes::STOP {
                return Ok(Progress::Complete { len: end });
            }
        }
    }

    /// How many more bytes to ask for: at least enough to reach `needed_end`, and the
    /// rest of the current frame when inside one, since the sender wrote it whole.
    fn want(&self, have: usize, needed_end: usize) -> usize {
        needed_end.max(self.frame_end).saturating_sub(have).max(1)
    }
}

fn nth_newline(bytes: &[u8], n: usize) -> Option<usize> {
    bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(n - 1).map(|(i, _)| i)
}

fn le_uint(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// Reads exactly one pickle from `reader`, never past its STOP opcode, refusing more
/// than `limit` bytes. Timeouts are the reader's: set them on the socket beforehand.
pub fn read_pickle<R: Read>(reader: &mut R, limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(256);
    read_pickle_into(reader, limit, &mut buf)?;
    Ok(buf)
}

/// [`read_pickle`] into a caller's buffer, which holds every byte read even when the
/// result is an error (to show what arrived, or to read on past a non-pickle).
pub fn read_pickle_into<R: Read>(reader: &mut R, limit: usize, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    buf.clear();
    let mut framer = Framer::new();
    loop {
        let need = match framer.advance(buf)? {
            Progress::Complete { .. } => return Ok(()),
            Progress::NeedMore(n) => n,
        };
        if buf.len() + need > limit {
            return Err(FrameError::TooLarge { limit });
        }
        let old = buf.len();
        buf.resize(old + need, 0);
        let got = loop {
            match reader.read(&mut buf[old..]) {
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        buf.truncate(old + *got.as_ref().unwrap_or(&0));
        match got {
            Ok(0) => return Err(FrameError::Incomplete { received: buf.len() }),
            Ok(_) => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per call and records how much was taken.
    struct Trickle<'a> {
        data: &'a [u8],
        taken: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.taken == self.data.len() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.data[self.taken];
            self.taken += 1;
            Ok(1)
        }
    }

    // pickle.dumps(('PROBE', None), 4) followed by bytes that must stay unread.
    const PROBE_P4: &[u8] = b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x8c\x05PROBE\x94N\x86\x94.";

    #[test]
    fn stops_at_stop_without_reading_further() {
        let mut data = PROBE_P4.to_vec();
        data.extend_from_slice(b"EXTRA");
        let mut r = Trickle { data: &data, taken: 0 };
        let got = read_pickle(&mut r, MAX_PICKLE_BYTES).unwrap();
        assert_eq!(got, PROBE_P4);
        assert_eq!(r.taken, PROBE_P4.len(), "read past STOP");
    }

    #[test]
    fn reads_a_frame_in_one_request() {
        let mut framer = Framer::new();
        // After PROTO and the FRAME header, the framer asks for the whole frame.
        assert_eq!(framer.advance(&PROBE_P4[..11]).unwrap(), Progress::NeedMore(12));
        assert_eq!(framer.advance(PROBE_P4).unwrap(), Progress::Complete { len: PROBE_P4.len() });
    }

    #[test]
    fn truncation_is_incomplete_and_garbage_is_invalid() {
        let mut r = &PROBE_P4[..10];
        assert!(matches!(read_pickle(&mut r, MAX_PICKLE_BYTES), Err(FrameError::Incomplete { received: 10 })));
        let mut r: &[u8] = b"\x00garbage";
        assert!(matches!(read_pickle(&mut r, MAX_PICKLE_BYTES), Err(FrameError::Invalid { offset: 0, .. })));
        let mut r: &[u8] = b"";
        assert!(matches!(read_pickle(&mut r, MAX_PICKLE_BYTES), Err(FrameError::Incomplete { received: 0 })));
    }

    #[test]
    fn lying_lengths_and_oversize_are_refused_without_allocating() {
        // BINUNICODE claiming 4 GiB.
        let mut r: &[u8] = b"\x80\x02X\xff\xff\xff\xffabc";
        assert!(matches!(read_pickle(&mut r, 1024), Err(FrameError::TooLarge { .. })));
        // BINUNICODE8 claiming 2^64-1 bytes.
        let mut r: &[u8] = b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff";
        assert!(matches!(read_pickle(&mut r, 1024), Err(FrameError::TooLarge { .. })));
        // A real pickle that is simply longer than the cap.
        let mut long = b"\x80\x02X\x00\x08\x00\x00".to_vec();
        long.extend(std::iter::repeat_n(b'a', 2048));
        long.extend_from_slice(b".");
        assert!(matches!(read_pickle(&mut &long[..], 1024), Err(FrameError::TooLarge { .. })));
        assert!(read_pickle(&mut &long[..], 4096).is_ok());
    }

    #[test]
    fn protocol_zero_lines() {
        // pickle.dumps(('PROBE', None), 0)
        let p0 = b"(VPROBE\np0\nNtp1\n.";
        let mut r = Trickle { data: p0, taken: 0 };
        assert_eq!(read_pickle(&mut r, 1024).unwrap(), p0);
    }
}
