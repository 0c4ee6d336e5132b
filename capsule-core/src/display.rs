//! Unambiguous, printable rendering of raw path bytes for messages, text and JSON output.
//!
//! Valid UTF-8 printable text is kept; a backslash becomes `\\`; invalid bytes and control
//! characters become `\xNN`. Two different byte strings never render the same.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Renders raw bytes as described in the module comment.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut b = [0u8; 4];
                    for byte in c.encode_utf8(&mut b).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// A relative manifest path for display: the root itself is shown as `.`.
pub fn rel_path(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        ".".to_string()
    } else {
        escape_bytes(bytes)
    }
}

/// A filesystem path for display.
pub fn path(p: &Path) -> String {
    escape_bytes(p.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_unambiguous() {
        assert_eq!(escape_bytes(b"plain/name"), "plain/name");
        assert_eq!(escape_bytes(b"a\xffb"), "a\\xffb");
        assert_eq!(escape_bytes(b"a\\xffb"), "a\\\\xffb");
        assert_eq!(escape_bytes(b"tab\there"), "tab\\x09here");
        assert_eq!(escape_bytes("h\u{e9}".as_bytes()), "h\u{e9}");
        assert_eq!(rel_path(b""), ".");
    }
}
