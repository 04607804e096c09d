//! The pickle codec: bytes to values and back, and reading exactly one pickle from a
//! stream. Nothing here knows the protocol's messages (see `protocol`). It knows bytes and values, not sockets (a `Read` at most).

mod decode;
mod encode;
mod framing;
mod opcodes;
pub mod pyrepr;
mod value;

pub use decode::{decode, DecodeError, DecodeErrorKind, MAX_DEPTH, NODES_PER_INPUT_BYTE, PAYLOAD_PER_INPUT_BYTE};
pub use encode::{encode, Style};
pub use framing::{
    is_timeout, read_pickle, read_pickle_into, FrameError, Framer, Progress, MAX_LINE_BYTES, MAX_PICKLE_BYTES,
};
pub use value::Value;
