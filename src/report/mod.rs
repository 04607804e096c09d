//! What a person and a tool read: log lines (`logging`), the JSON event stream and its
//! one-line descriptions (`events`), and the figures at the end of a run (`summary`).
//! `events` uses `logging`; `logging` uses only [`printable`], which escapes and caps
//! whatever came from the network before a person sees it.

pub mod events;
pub mod logging;
pub mod summary;

/// `bytes` from the network as a person may see them: printable text as it is, every
/// control character and byte that is not UTF-8 escaped (`\x1b`, `\0`), and at most
/// `max` characters, saying how many more there were. Nothing a peer or a "GCD" sends
/// can move the cursor, change colours or ring the bell in a terminal.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let total = text.chars().count();
    for (shown, c) in text.chars().enumerate() {
        if shown == max {
            out.push_str(&format!("… ({} more characters)", total - max));
            break;
        }
        match c {
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
