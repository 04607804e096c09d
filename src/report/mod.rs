//! What a person and a tool read: log lines (`logging`), the JSON event stream and its
//! one-line descriptions (`events`), and the figures at the end of a run (`summary`).
//! `events` uses `logging`; `logging` uses nothing of ours.

pub mod events;
pub mod logging;
pub mod summary;
