//! Output helpers shared by the commands: sizes, colour (only on a terminal, never under `NO_COLOR`),
//! escaping of what the system names (terminal, JSON, XML).

use std::io::IsTerminal;

use vmspace_core::Prot;

/// Bytes in binary units, rounded to the nearest, in one style everywhere: below ten units one
/// decimal (`5.6M`, whole values without it: `4K`), from ten on none (`386G`, `132K`); a value that
/// rounds up to 1024 goes to the next unit (`1.0M`). Bytes below 1 KiB are printed as `512B`; zero
/// is `0`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes == 0 {
        return "0".into();
    }
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut u = 0;
    while u + 1 < UNITS.len() && bytes >= 1u64 << (10 * (u + 2)) {
        u += 1;
    }
    let v = bytes as f64 / (1u64 << (10 * (u + 1))) as f64;
    if v < 9.95 {
        if bytes.is_multiple_of(1u64 << (10 * (u + 1))) {
            format!("{v:.0}{}", UNITS[u])
        } else {
            format!("{v:.1}{}", UNITS[u])
        }
    } else if v.round() >= 1024.0 && u + 1 < UNITS.len() {
        format!("1.0{}", UNITS[u + 1])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

/// `s` with every control character (C0, DEL, C1) written as an escape (`\t`, `\n`, `\e`, `\x7f`,
/// `\u{9b}`), so that a name from the system (a file name, a command name)
/// cannot move the cursor or rewrite the terminal.
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\t' => o.push_str("\\t"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\x1b' => o.push_str("\\e"),
            c if (c as u32) < 0x80 && c.is_control() => o.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => o.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => o.push(c),
        }
    }
    std::borrow::Cow::Owned(o)
}

/// A number with thousands separators: `1,234,567` (one formatter, in the bench library).
pub use vmspace_bench::grouped;

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
        assert_eq!(human(0), "0");
        assert_eq!(human(1000), "1000B");
        assert_eq!(human(5_872_025), "5.6M");
        assert_eq!(human(135_168), "132K");
        assert_eq!(human((1 << 20) - 1), "1.0M");
        // Rounded, not truncated: 9.96 MiB is 10M, 385.6 GiB is 386G.
        assert_eq!(human(10_443_000), "10M");
        assert_eq!(human(414_035_000_000), "386G");
        assert_eq!(human(u64::MAX), "16E");
        assert_eq!(esc("a\tb\x1b[2J\u{9b}\\"), "a\\tb\\e[2J\\u{9b}\\");
        assert_eq!(esc("plain"), "plain");
    }
}
