//! Names from a snapshot made safe to print: a file name may hold any byte
//! but `/` and NUL, so a name with a newline would print as two entries and
//! one with terminal escapes could rewrite the screen.
//!
//! Control characters (C0, DEL, C1), Unicode line and paragraph separators
//! and bidirectional-text controls are written as `\n`, `\t`, `\r`, `\xNN`
//! or `\u{NNNN}`; a backslash as `\\`, so the output is unambiguous; bytes
//! that are not UTF-8 as `\xNN`.

/// Whether `c` must not reach a terminal or a line-oriented reader as is.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if unsafe_char(c) && (c as u32) < 0x100 => {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
        c if unsafe_char(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        c => out.push(c),
    }
}

/// Escapes a byte string (a file name, a symlink target) for printing.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        chunk.valid().chars().for_each(|c| push_char(&mut out, c));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Escapes text (a path already joined, a user name) for printing.
pub fn escape(text: &str) -> String {
    escape_bytes(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_on_one_line_and_unambiguously() {
        assert_eq!(escape("etc/passwd"), "etc/passwd");
        assert_eq!(
            escape("a\n-rw-r--r-- root/root 0 /etc/shadow"),
            "a\\n-rw-r--r-- root/root 0 /etc/shadow"
        );
        assert_eq!(escape("\x1b[2J"), "\\x1b[2J");
        assert_eq!(escape("a\\nb"), "a\\\\nb");
        assert_eq!(escape("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(escape_bytes(b"odd-\xff-name"), "odd-\\xff-name");
        assert_eq!(escape("caf\u{e9} \u{85}"), "caf\u{e9} \\x85");
    }
}
