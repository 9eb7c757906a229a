//! `proc::maps` against the live kernel: every line of this process's and a few other processes'
//! `maps` parses and is written back byte for byte; malformed lines are refused.

use vmspace_linux::proc::maps;

fn roundtrip(text: &str) -> usize {
    let lines = maps::parse(text).expect("the kernel's maps parse");
    let back: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let want: Vec<&str> = text.lines().collect();
    assert_eq!(back.len(), want.len());
    for (b, w) in back.iter().zip(&want) {
        assert_eq!(b, w);
    }
    lines.len()
}

#[test]
fn every_kernel_line_parses_and_writes_back() {
    // A named anonymous mapping and a file with a space and a newline in its name, so the padding and
    // escaping are exercised.
    let dir = std::env::temp_dir().join(format!("vmspace-linux-maps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("  odd name\nwith newline");
    std::fs::write(&path, vec![7u8; 8192]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: a new private mapping at an address the kernel chooses; nothing else refers to it.
    let map = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            8192,
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::PRIVATE,
            &file,
            0,
        )
    }
    .unwrap();
    let text = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(text.contains("  odd name\\012with newline"), "{text}");
    let odd = maps::parse(&text).unwrap().into_iter().find(|l| l.name.contains("odd name")).unwrap();
    assert!(odd.name.starts_with(&format!("{}/  odd", dir.display())), "{:?}", odd.name);
    let n = roundtrip(&text);
    assert!(n > 5);
    let mut others = 0;
    for pid in ["1", "2"] {
        if let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            roundtrip(&t);
            others += 1;
        }
    }
    assert!(others >= 1, "no other process's maps could be read");
    // SAFETY: the mapping made above, which nothing refers to any more.
    unsafe { rustix::mm::munmap(map, 8192) }.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_lines_are_refused() {
    let good = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ";
    assert!(maps::parse_line(good).is_ok());
    for bad in [
        "",
        "7f0000001000-7f0000000000 rw-p 00000000 00:00 0",
        "7f0000000001-7f0000001000 rw-p 00000000 00:00 0",
        "7f0000000000-7f0000001000 rwzp 00000000 00:00 0",
        "7f0000000000-7f0000001000 rw-q 00000000 00:00 0",
        "7f0000000000-7f0000001000 rw-p 0000000g 00:00 0",
        "7f0000000000-7f0000001000 rw-p 00000000 0000 0",
        "7f0000000000-7f0000001000 rw-p 00000000 00:00 -1",
        "7f0000000000+7f0000001000 rw-p 00000000 00:00 0",
        "10000000000000000-10000000001000 rw-p 00000000 00:00 0",
    ] {
        assert!(maps::parse_line(bad).is_err(), "accepted {bad:?}");
    }
    let overlapping = "1000-3000 rw-p 00000000 00:00 0\n2000-4000 rw-p 00000000 00:00 0\n";
    assert_eq!(maps::parse(overlapping).unwrap_err().line, 2);
}
