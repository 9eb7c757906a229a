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

#[test]
fn the_tour_in_json_is_one_object_per_step() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmspace")).args(["tour", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = Command::new("python3")
        .args([
            "-c",
            "import json,sys\nsteps=[json.loads(l) for l in sys.stdin]\n\
             assert all(isinstance(s['step'], int) and isinstance(s['text'], str) for s in steps)\n\
             agreed=[s['step'] for s in steps if s['agrees'] is True]\n\
             print(len(agreed), all(isinstance(s['entries'], int) for s in steps))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut check = check;
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), &out.stdout).unwrap();
    drop(check.stdin.take());
    let r = check.wait_with_output().unwrap();
    assert!(r.status.success(), "not JSON lines: {}", String::from_utf8_lossy(&out.stdout));
    // Five steps in the parent and the forked child's: every one agreed with the kernel.
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "6 True");
}
