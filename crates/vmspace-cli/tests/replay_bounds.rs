//! A trace is read a line at a time, a buffer at a time, up to a limit: past it the replay stops with
//! exit code 2 before the rest of the line is read.

mod common;

use std::io::{BufReader, Read, Write};
use std::process::Stdio;

use common::*;
use vmspace_cli::replay::{self, MAX_LINE, Options};

fn mmap(pid: u32, addr: u64, len: u64, prot: &str) -> String {
    format!("{pid}  mmap({addr:#x}, {len}, {prot}, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {addr:#x}")
}

/// A reader that counts what is read from it.
struct Counting<R>(R, u64);
impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}

#[test]
fn a_line_is_read_a_buffer_at_a_time_up_to_the_limit() {
    let line = |n: usize| {
        let mut v = vec![b'a'; n];
        v.push(b'\n');
        v.extend_from_slice(b"next\n");
        v
    };
    let mut buf = Vec::new();
    // At the limit: read whole; the next line follows.
    let mut r = BufReader::with_capacity(4096, std::io::Cursor::new(line(100_000)));
    assert_eq!(replay::read_line_bounded(&mut r, &mut buf, 100_000).unwrap(), Some(100_001));
    assert_eq!(replay::read_line_bounded(&mut r, &mut buf, 100_000).unwrap(), Some(5));
    assert_eq!(buf, b"next\n");
    assert_eq!(replay::read_line_bounded(&mut r, &mut buf, 100_000).unwrap(), Some(0));
    // One past it: refused.
    let mut r = BufReader::with_capacity(4096, std::io::Cursor::new(line(100_001)));
    assert_eq!(replay::read_line_bounded(&mut r, &mut buf, 100_000).unwrap(), None);
    // A 1 GiB line is refused after the limit and one buffer, never read to its end.
    let mut r = BufReader::with_capacity(1 << 16, Counting(std::io::repeat(b'a').take(1 << 30), 0));
    assert_eq!(replay::read_line_bounded(&mut r, &mut buf, MAX_LINE).unwrap(), None);
    assert!(r.get_ref().1 <= (MAX_LINE + (1 << 16)) as u64, "read {}", r.get_ref().1);
    assert!(buf.len() <= MAX_LINE);
}

#[test]
fn a_line_past_the_limit_through_a_pipe_is_refused_with_exit_2() {
    let mut child = bin()
        .args(["replay", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let total = 64usize << 20;
    let writer = std::thread::spawn(move || {
        let mut sent = 0usize;
        let first = mmap(100, 0x7f00_0000_0000, 4096, "PROT_READ") + "\n";
        if stdin.write_all(first.as_bytes()).is_err() {
            return sent;
        }
        let chunk = vec![b'a'; 1 << 20];
        while sent < total {
            if stdin.write_all(&chunk).is_err() {
                return sent;
            }
            sent += chunk.len();
        }
        let _ = stdin.write_all(b"\n");
        sent
    });
    let out = child.wait_with_output().unwrap();
    let sent = writer.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 2 is longer than 8 MiB"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
    // The replay stopped reading after the limit: the writer could not hand it the whole line.
    assert!(sent < total, "the whole 64 MiB line was read");
}

#[test]
fn a_long_line_under_the_limit_is_replayed() {
    let dir = tmpdir("bounds-long");
    let t = dir.join("t.trace");
    let long = format!("100  execve(\"/bin/x\", [\"{}\"], 0x7ffd /* 1 var */) = 0", "a".repeat(4 << 20));
    std::fs::write(&t, [long, mmap(100, 0x7f00_0000_0000, 4096, "PROT_READ")].join("\n")).unwrap();
    let (rep, _) = replay::replay(&Options { trace: t, strict: true, ..Default::default() }).unwrap();
    assert_eq!(rep.spaces.len(), 1);
    assert_eq!(rep.spaces[0].map.len(), 1);
    assert_eq!(rep.spaces[0].program(), "/bin/x");
}
