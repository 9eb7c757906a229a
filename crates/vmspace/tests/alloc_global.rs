//! A program with `LargeAlloc` as its global allocator runs ordinary std work unchanged: vectors,
//! maps and strings growing through the large sizes, threads, sorting.

use std::collections::HashMap;

use vmspace::alloc::LargeAlloc;

#[global_allocator]
static A: LargeAlloc = LargeAlloc::new();

#[test]
fn std_workload_runs_on_the_large_allocator() {
    // A vector growing by doubling from small to 64 MiB (realloc through every class).
    let mut v: Vec<u64> = Vec::new();
    for i in 0..(8u64 << 20) {
        v.push(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    assert!(A.owns(v.as_ptr().cast()));
    let sum = v.iter().fold(0u64, |a, &x| a.wrapping_add(x));
    let mut w = v.clone();
    w.sort_unstable();
    assert_eq!(w.iter().fold(0u64, |a, &x| a.wrapping_add(x)), sum);
    assert!(w.windows(2).all(|p| p[0] <= p[1]));
    drop((v, w));

    // A hash map with a million entries and a string of 16 MiB.
    let mut m = HashMap::new();
    for i in 0..1_000_000u32 {
        m.insert(i, i.to_string());
    }
    assert_eq!(m.len(), 1_000_000);
    assert_eq!(m[&123_456], "123456");
    let mut s = String::new();
    while s.len() < 16 << 20 {
        s.push_str("the quick brown fox jumps over the lazy dog\n");
    }
    assert_eq!(s.lines().count(), s.len() / 44);
    drop((m, s));

    // Threads churning large buffers.
    let total: u64 = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                sc.spawn(move || {
                    let mut acc = 0u64;
                    for i in 0..200u64 {
                        let n = 64 * 1024 + ((i * 7919 + t * 104_729) % (2 << 20)) as usize;
                        let mut b = vec![t as u8; n];
                        b[n - 1] = 1;
                        b.extend_from_slice(&[2u8; 100_000]);
                        acc += b.iter().map(|&x| x as u64).sum::<u64>();
                    }
                    acc
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(total > 0);
    let st = A.stats();
    assert!(st.mapped > 0 && st.reused > 0, "{st:?}");
    // Boxed slices with big alignment.
    #[repr(align(1048576))]
    struct Big([u8; 1 << 20]);
    let b = Box::new(Big([3; 1 << 20]));
    assert_eq!(&*b as *const Big as usize % (1 << 20), 0);
    assert_eq!(b.0[12345], 3);
}
