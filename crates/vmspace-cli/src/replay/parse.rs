//! The strace line grammar: `strace -f -e trace=memory,process` output, with or without `-o` (pid
//! prefix `1234  ` or `[pid 1234] `), timestamps (`-t`, `-tt`, `-ttt`, `-r`), instruction pointers
//! (`-i`), durations (`-T`), decoded descriptors (`-y`), `<unfinished ...>` / `<... NAME resumed>` pairs,
//! signals (`--- SIGCHLD {...} ---`) and exits (`+++ exited with 0 +++`).
//!
//! Invariant: every function here is total: any input, however malformed, yields a [`Line`] or an
//! error string, never a panic (slicing only at positions found by `find` on ASCII bytes).

/// A syscall's return value as strace prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// A non-negative value (`= 0`, `= 0x7f12…`, `= 1235`).
    Ok(u64),
    /// `= -1 ENOMEM (…)` and other failures.
    Err,
    /// `= ?` (the call did not return: exit, execve in a thread) or `= ? ERESTART…`.
    Unknown,
}

impl Ret {
    /// Whether the call succeeded.
    pub fn ok(self) -> Option<u64> {
        match self {
            Ret::Ok(v) => Some(v),
            _ => None,
        }
    }
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete call: `name(args) = ret`.
    Call {
        /// Process (thread) id; 0 when the trace has no pid prefix.
        pid: u32,
        /// Syscall name.
        name: &'a str,
        /// The text between the parentheses.
        args: &'a str,
        /// The result.
        ret: Ret,
    },
    /// The first half of a call: `name(args <unfinished ...>`.
    Unfinished {
        /// Process id.
        pid: u32,
        /// Syscall name.
        name: &'a str,
        /// The arguments printed so far.
        args: &'a str,
    },
    /// The second half: `<... name resumed> rest) = ret`.
    Resumed {
        /// Process id.
        pid: u32,
        /// Syscall name.
        name: &'a str,
        /// The rest of the arguments (may start with `, `).
        args: &'a str,
        /// The result.
        ret: Ret,
    },
    /// `+++ exited with N +++`, `+++ killed by SIG +++`.
    Exit {
        /// Process id.
        pid: u32,
    },
    /// `+++ superseded by execve in pid BY +++`: thread `by` of thread group leader `pid` exec'd; the
    /// leader's thread is gone and `by` goes on under the leader's pid.
    Superseded {
        /// The leader's pid (the one the process keeps).
        pid: u32,
        /// The thread that exec'd.
        by: u32,
    },
    /// A signal, a blank line, a `strace:` message, `<... resumed> <unfinished ...>`: nothing to apply.
    Ignored,
}

/// Parses a decimal number.
fn dec(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Strips the pid prefix; returns the pid (0 without prefix) and the rest.
fn pid_prefix(line: &str) -> (u32, &str) {
    if let Some(rest) = line.strip_prefix("[pid ") {
        let rest = rest.trim_start();
        if let Some(end) = rest.find(']')
            && let Some(p) = dec(rest[..end].trim())
            && let Ok(p) = u32::try_from(p)
        {
            return (p, rest[end + 1..].trim_start());
        }
        return (0, line);
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && line.as_bytes().get(digits) == Some(&b' ') {
        // "1234  name(" or "1234 12:00:00 name(": digits then spaces. A timestamp with -ttt also starts
        // with digits but continues with '.', so it never reaches here.
        if let Some(p) = dec(&line[..digits])
            && let Ok(p) = u32::try_from(p)
        {
            return (p, line[digits..].trim_start());
        }
    }
    (0, line)
}

/// Strips a timestamp (`12:00:00`, `12:00:00.123456`, `1700000000.123456`, `+0.000100` of `-r`) and an
/// instruction pointer (`[00007f…]`).
fn strip_prefixes(mut s: &str) -> &str {
    for _ in 0..3 {
        let tok_end = s.find(' ').unwrap_or(s.len());
        let tok = &s[..tok_end];
        let is_time = !tok.is_empty()
            && tok.bytes().any(|b| b == b':' || b == b'.')
            && tok.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b'.' || b == b'+');
        let is_ip = tok.len() > 2 && tok.starts_with('[') && tok.ends_with(']') && !tok.starts_with("[pid");
        if (is_time || is_ip) && tok_end < s.len() {
            s = s[tok_end..].trim_start();
        } else {
            break;
        }
    }
    s
}

/// Parses the text after `= `: `0`, `0x7f…`, `-1 ENOMEM (…)`, `?`, possibly followed by ` <0.000010>`
/// (`-T`) or a decoded annotation (`= 3</path>`).
pub fn parse_ret(s: &str) -> Option<Ret> {
    let s = s.trim();
    let tok_end = s.find([' ', '<', '\t']).unwrap_or(s.len());
    let tok = &s[..tok_end];
    if tok == "?" {
        return Some(Ret::Unknown);
    }
    if tok.starts_with('-') {
        return Some(Ret::Err);
    }
    num(tok).map(Ret::Ok)
}

/// Parses a number as strace prints arguments: `NULL`, decimal, `0x` hex, octal `0644`, negative
/// decimal (two's complement).
pub fn num(s: &str) -> Option<u64> {
    let s = without_comment(s).trim_ascii();
    if s == "NULL" {
        return Some(0);
    }
    if let Some(h) = s.strip_prefix("0x") {
        if h.is_empty() || h.len() > 16 {
            return None;
        }
        return u64::from_str_radix(h, 16).ok();
    }
    if let Some(d) = s.strip_prefix('-') {
        return dec(d).map(|v| 0u64.wrapping_sub(v));
    }
    if s.len() > 1
        && s.starts_with('0')
        && let Ok(v) = u64::from_str_radix(&s[1..], 8)
    {
        return Some(v);
    }
    dec(s)
}

/// `s` without the `/* NAMES */` that `-X verbose` writes after a raw number (`0x3 /* PROT_READ|PROT_WRITE */`):
/// the number is what was passed.
fn without_comment(s: &str) -> &str {
    match s.find("/*") {
        Some(i) if s.trim_end().ends_with("*/") => &s[..i],
        _ => s,
    }
}

/// Finds the end of the argument list in `s` (the text after `name(`): the position of the `)` that
/// is followed by ` = `, scanning from the end so that strings in arguments cannot fool it.
fn split_result(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    // The last " = " (scanning bytes from the end: results never contain " = ").
    let mut i = b.len().checked_sub(3)?;
    loop {
        if b[i] == b' ' && b[i + 1] == b'=' && b[i + 2] == b' ' {
            break;
        }
        i = i.checked_sub(1)?;
    }
    let mut j = i;
    while j > 0 && (b[j - 1] == b' ' || b[j - 1] == b'\t') {
        j -= 1;
    }
    if j == 0 || b[j - 1] != b')' {
        return None;
    }
    Some((&s[..j - 1], &s[i + 3..]))
}

/// Parses one line of a trace.
pub fn parse_line(line: &str) -> Result<Line<'_>, &'static str> {
    let line = line.trim_end_matches(['\n', '\r']);
    let (pid, rest) = pid_prefix(line);
    let rest = strip_prefixes(rest.trim_start());
    if rest.is_empty() {
        return Ok(Line::Ignored);
    }
    // `-k` prints the stack of each call below it, a frame a line: ` > /lib/libc.so.6(mmap+0x2a) [0x…]`.
    if rest.starts_with("---")
        || rest.starts_with("strace: ")
        || rest.starts_with("????")
        || rest.starts_with("> ")
    {
        return Ok(Line::Ignored);
    }
    if let Some(r) = rest.strip_prefix("+++ ") {
        if let Some(by) = r.strip_prefix("superseded by execve in pid ") {
            let by = by.strip_suffix("+++").and_then(|b| dec(b.trim())).and_then(|b| u32::try_from(b).ok());
            return by.map(|by| Line::Superseded { pid, by }).ok_or("unreadable superseded pid");
        }
        if r.ends_with("+++") && (r.starts_with("exited") || r.starts_with("killed")) {
            return Ok(Line::Exit { pid });
        }
        return Err("unknown +++ event");
    }
    if let Some(r) = rest.strip_prefix("<... ") {
        let end = r.find(" resumed>").ok_or("'<...' without 'resumed>'")?;
        let name = &r[..end];
        if !is_name(name) {
            return Err("bad syscall name in '<... resumed>'");
        }
        let after = &r[end + " resumed>".len()..];
        if after.trim_end().ends_with("<unfinished ...>") {
            // Resumed and interrupted again (by a signal): the completion comes later.
            return Ok(Line::Ignored);
        }
        let (args, ret) = split_result(after).ok_or("resumed call without ') = result'")?;
        let ret = parse_ret(ret).ok_or("unreadable result")?;
        return Ok(Line::Resumed { pid, name, args, ret });
    }
    let open = rest.find('(').ok_or("no '(' after the syscall name")?;
    let name = &rest[..open];
    if !is_name(name) {
        return Err("bad syscall name");
    }
    let body = &rest[open + 1..];
    if let Some(args) = body.trim_end().strip_suffix("<unfinished ...>") {
        return Ok(Line::Unfinished { pid, name, args: args.trim_end() });
    }
    let (args, ret) = split_result(body).ok_or("call without ') = result' (truncated line?)")?;
    let ret = parse_ret(ret).ok_or("unreadable result")?;
    Ok(Line::Call { pid, name, args, ret })
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits an argument list at top-level commas (outside `()`, `[]`, `{}`, `<>` and strings). At most
/// `out.len()` arguments are stored; returns how many there were.
pub fn split_args<'a>(s: &'a str, out: &mut [&'a str]) -> usize {
    let b = s.as_bytes();
    if !b.iter().any(|&c| matches!(c, b'"' | b'(' | b'[' | b'{' | b'<')) {
        // The common case (mmap, mprotect, munmap…): plain comma-separated values.
        let mut n = 0;
        for part in s.split(',') {
            if n < out.len() {
                out[n] = part.trim_ascii();
            }
            n += 1;
        }
        if n == 1 && s.trim_ascii().is_empty() {
            return 0;
        }
        return n;
    }
    let (mut depth, mut in_str, mut esc) = (0i32, false, false);
    let (mut n, mut start) = (0usize, 0usize);
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'(' | b'[' | b'{' | b'<' => depth += 1,
            b')' | b']' | b'}' | b'>' => depth -= 1,
            b',' if depth <= 0 => {
                if n < out.len() {
                    out[n] = s[start..i].trim_ascii();
                }
                n += 1;
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = s[start..].trim_ascii();
    if !last.is_empty() || n > 0 {
        if n < out.len() {
            out[n] = last;
        }
        n += 1;
    }
    n
}

/// Names strace or the C library also spell flags with, beside the kernel's (`vmspace_linux::abi`).
const ALIASES: &[(&str, u64)] = &[("MAP_FILE", 0), ("MAP_ANON", 0x20)];

/// Parses a flag set (`PROT_READ|PROT_WRITE`, `MAP_PRIVATE|MAP_ANONYMOUS|0x40000`, `0x22`) with a
/// name table; unknown names are an error, numbers are or-ed in.
pub fn flags(s: &str, table: &[(&str, u64)]) -> Option<u64> {
    let mut v = 0u64;
    for tok in without_comment(s).split('|') {
        let tok = tok.trim();
        if let Some(&(_, bit)) = table.iter().chain(ALIASES).find(|(n, _)| *n == tok) {
            v |= bit;
        } else {
            v |= num(tok)?;
        }
    }
    Some(v)
}

/// Whether a clone flag list (`CLONE_VM|CLONE_FS|…|SIGCHLD`) contains `CLONE_VM`.
pub fn has_clone_vm(flags: &str) -> bool {
    flags.split('|').any(|t| t.trim() == "CLONE_VM")
        || flags.split('|').filter_map(num).any(|v| v & 0x100 != 0)
}

/// The value of `key=` in a clone argument list (`flags=CLONE_VM|…`), up to the next top-level
/// comma or closing brace.
pub fn keyed<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = args[from..].find(key) {
        let at = from + i;
        let before_ok = at == 0 || matches!(args.as_bytes()[at - 1], b' ' | b'{' | b',');
        if before_ok && args[at + key.len()..].starts_with('=') {
            let v = &args[at + key.len() + 1..];
            let end = v.find([',', '}', ')']).unwrap_or(v.len());
            return Some(v[..end].trim());
        }
        from = at + key.len();
    }
    None
}

/// A file descriptor argument: `3`, `-1`, or `3</usr/lib/libc.so.6>` (with `-y`); returns the number
/// and the path when decoded.
pub fn fd_arg(s: &str) -> Option<(i64, Option<&str>)> {
    let s = s.trim();
    if let Some(lt) = s.find('<') {
        let n = num(&s[..lt])? as i64;
        let p = s[lt + 1..].strip_suffix('>').unwrap_or(&s[lt + 1..]);
        return Some((n, Some(p)));
    }
    Some((num(s)? as i64, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            parse_line("1234  mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000")
                .unwrap(),
            Line::Call {
                pid: 1234,
                name: "mmap",
                args: "NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0",
                ret: Ret::Ok(0x7f0000000000)
            }
        );
        assert_eq!(
            parse_line(
                "[pid  77] 12:00:01.000123 munmap(0x1000, 4096) = -1 EINVAL (Invalid argument) <0.000004>"
            )
            .unwrap(),
            Line::Call { pid: 77, name: "munmap", args: "0x1000, 4096", ret: Ret::Err }
        );
        assert_eq!(
            parse_line("brk(NULL)                               = 0x55d0c1000000").unwrap(),
            Line::Call { pid: 0, name: "brk", args: "NULL", ret: Ret::Ok(0x55d0c1000000) }
        );
        assert_eq!(
            parse_line("5  clone3({flags=CLONE_VM, exit_signal=0}, 88 <unfinished ...>").unwrap(),
            Line::Unfinished { pid: 5, name: "clone3", args: "{flags=CLONE_VM, exit_signal=0}, 88" }
        );
        assert_eq!(
            parse_line("5  <... clone3 resumed> => {parent_tid=[6]}, 88) = 6").unwrap(),
            Line::Resumed { pid: 5, name: "clone3", args: " => {parent_tid=[6]}, 88", ret: Ret::Ok(6) }
        );
        assert_eq!(parse_line("6  +++ exited with 0 +++").unwrap(), Line::Exit { pid: 6 });
        assert_eq!(
            parse_line("6  +++ superseded by execve in pid 9 +++").unwrap(),
            Line::Superseded { pid: 6, by: 9 }
        );
        assert!(parse_line("6  +++ superseded by execve in pid x +++").is_err());
        assert_eq!(
            parse_line("6  --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED} ---").unwrap(),
            Line::Ignored
        );
        assert_eq!(
            parse_line("1700000000.123456 exit_group(0) = ?").unwrap(),
            Line::Call { pid: 0, name: "exit_group", args: "0", ret: Ret::Unknown }
        );
        assert!(parse_line("1234  mmap(NULL, 8192, PROT_READ").is_err());
        assert!(parse_line("garbage").is_err());
        assert!(parse_line("<... mmap resumed").is_err());
    }

    #[test]
    fn args() {
        let mut a = [""; 6];
        let n = split_args("NULL, 8192, PROT_READ, MAP_PRIVATE, 3</a, b>, 0x1000", &mut a);
        assert_eq!(n, 6);
        assert_eq!(a[4], "3</a, b>");
        assert_eq!(fd_arg(a[4]), Some((3, Some("/a, b"))));
        use vmspace_linux::abi::{MAP_NAMES, PROT_NAMES};
        assert_eq!(flags("PROT_READ|PROT_EXEC", PROT_NAMES), Some(5));
        assert_eq!(flags("MAP_PRIVATE|0x40", MAP_NAMES), Some(0x42));
        assert_eq!(flags("MAP_ANON|MAP_FILE|MAP_SHARED", MAP_NAMES), Some(0x21));
        assert_eq!(flags("MAP_BOGUS", MAP_NAMES), None);
        assert_eq!(num("-1"), Some(u64::MAX));
        assert!(has_clone_vm("CLONE_VM|CLONE_FS|SIGCHLD"));
        assert!(!has_clone_vm("CLONE_VFORK|SIGCHLD"));
        assert_eq!(
            keyed("child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x1", "flags"),
            Some("CLONE_CHILD_CLEARTID|SIGCHLD")
        );
        assert_eq!(
            keyed("{flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD}, 88", "flags"),
            Some("CLONE_VM|CLONE_VFORK")
        );
    }
}
