//! Output helpers shared by the commands: sizes, colour (only on a terminal, never under `NO_COLOR`),
//! JSON string escaping, XML escaping.

use std::io::IsTerminal;

use vmspace_core::{HumanSize, Prot};

/// Bytes as `128K`, `7.8M`; `0` for zero.
pub fn human(bytes: u64) -> String {
    HumanSize(bytes).to_string()
}

/// A number with thousands separators: `1,234,567`.
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether to colour standard output: a terminal, and `NO_COLOR` unset or empty.
pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// ANSI styling that is a no-op when colour is off.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// Whether escapes are emitted.
    pub on: bool,
}

impl Style {
    /// Wraps `s` in the SGR code `code` (e.g. `"1"` bold, `"31"` red).
    pub fn paint(&self, code: &str, s: &str) -> String {
        if self.on { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }

    /// `s` coloured by protection: executable red, writable green, read-only blue, none dim.
    pub fn prot(&self, p: Prot, s: &str) -> String {
        let code = if p.contains(Prot::EXECUTE) {
            "31"
        } else if p.contains(Prot::WRITE) {
            "32"
        } else if p.contains(Prot::READ) {
            "34"
        } else {
            "2"
        };
        self.paint(code, s)
    }
}

/// `s` as a JSON string literal, quotes included.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `s` escaped for XML text and attribute values; characters XML 1.0 forbids are dropped.
pub fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(12), "12");
        assert_eq!(json_str("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
        assert_eq!(xml("<a&'b\u{1}>"), "&lt;a&amp;&apos;b&gt;");
        assert_eq!(human(4096), "4K");
    }
}
