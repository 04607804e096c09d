//! The protocol's messages and dialects: the one place where pickle values meet
//! process ids, addresses and members. `wire` below knows only bytes and values.

mod dialect;
mod habits;
mod message;
mod values;

pub use dialect::{ok_on_new_connection, Dialect, OkHabit};
pub use habits::{Learned, ReplyBook};
pub use message::{Heard, Message, RegisterName, Reply};
pub use values::{pid_from_value, pid_to_value};

use crate::wire::{encode, Style};

/// Pickles a message in the compact style we send to peers.
pub fn encode_message(msg: &Message) -> Vec<u8> {
    encode(&msg.to_value(), Style::Compact)
}
