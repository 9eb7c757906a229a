//! `vmspace tour` runs every step on real memory and checks the map against the kernel after each.

use std::process::Command;

#[test]
fn the_tour_runs_and_the_map_always_agrees_with_the_kernel() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmspace")).arg("tour").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("the map and /proc/self/smaps agree page by page").count(), 5, "{stdout}");
    assert!(stdout.contains("the child's map and its kernel agree: yes"), "{stdout}");
    assert!(stdout.contains("its stack grew on faults to"), "{stdout}");
    assert!(
        stdout.contains("Unreclaimed (reusable: true)") && stdout.contains("says Deallocated"),
        "{stdout}"
    );
    #[cfg(target_arch = "x86_64")]
    assert!(stdout.contains("(r-x): 42"), "{stdout}");
}
