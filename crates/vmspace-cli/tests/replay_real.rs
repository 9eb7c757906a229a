//! Replays of traces recorded here from real programs (`strace -f -e trace=memory,process`): a Python
//! one-liner with threads and a fork, `ls -R`, this multi-threaded Rust test binary itself, a
//! multi-threaded C program that uses every attribute
//! call and forks and vforks, and a shell that forks and execs. Each process writes its own
//! /proc/self/maps at its very end; `--against` must find no difference in the pages the trace touched,
//! for every process that wrote one.

mod common;

use common::*;

fn preload(dir: &std::path::Path) -> String {
    cc(dir, "dumpmaps.so", PRELOAD_C, &["-shared", "-fPIC", "-O1"]).display().to_string()
}

/// Compares every dump in `dir` with the replay of `trace`; returns how many were compared.
fn check_all(trace: &std::path::Path, dir: &std::path::Path, at_least: usize) {
    let dumps = dumps(dir);
    assert!(
        dumps.len() >= at_least,
        "expected ≥ {at_least} maps dumps in {}, got {}",
        dir.display(),
        dumps.len()
    );
    for (pid, maps) in &dumps {
        assert_matches(trace, maps, Some(*pid));
    }
}

#[test]
fn python_threads_and_fork() {
    if !strace_works() {
        return;
    }
    let dir = tmpdir("python");
    let so = preload(&dir);
    let d = dir.display().to_string();
    let prog = "import os, sys, threading, mmap\n\
                def work():\n    b = [bytearray(300000) for _ in range(20)]\n    m = mmap.mmap(-1, 1 << 20); m.close()\n\
                ts = [threading.Thread(target=work) for _ in range(4)]\n\
                [t.start() for t in ts]; [t.join() for t in ts]\n\
                pid = os.fork()\n\
                if pid == 0:\n    x = bytearray(5 << 20); sys.exit(0)\n\
                os.waitpid(pid, 0)\n";
    let trace =
        record(&dir, "python", &[("VMSPACE_MAPS_DIR", &d), ("LD_PRELOAD", &so)], &["python3", "-c", prog]);
    check_all(&trace, &dir, 2);
}

/// The workload of `threaded_rust_test_binary`: runs only when that test starts this binary again.
#[test]
fn rust_threads_workload() {
    if std::env::var_os("VMSPACE_RUST_WORKLOAD").is_none() {
        return;
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                // Enough to make the allocator map arenas and large blocks of its own.
                let v: Vec<Vec<u8>> = (0..16).map(|i| vec![t as u8; 64 * 1024 * (i + 1)]).collect();
                v.iter().map(|b| b.len()).sum::<usize>()
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(total > 0);
}

#[test]
fn threaded_rust_test_binary() {
    if !strace_works() {
        return;
    }
    let dir = tmpdir("rust");
    let so = preload(&dir);
    let d = dir.display().to_string();
    let exe = std::env::current_exe().unwrap();
    let trace = record(
        &dir,
        "rust",
        &[("VMSPACE_MAPS_DIR", &d), ("LD_PRELOAD", &so), ("VMSPACE_RUST_WORKLOAD", "1")],
        &[exe.to_str().unwrap(), "--exact", "rust_threads_workload", "--test-threads=2"],
    );
    check_all(&trace, &dir, 1);
}

#[test]
fn ls_recursive() {
    if !strace_works() {
        return;
    }
    let dir = tmpdir("ls");
    let so = preload(&dir);
    let tree = dir.join("tree");
    for i in 0..20 {
        let sub = tree.join(format!("d{i}")).join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        for j in 0..10 {
            std::fs::write(sub.join(format!("f{j}")), b"x").unwrap();
        }
    }
    let d = dir.display().to_string();
    let trace = record(
        &dir,
        "ls",
        &[("VMSPACE_MAPS_DIR", &d), ("LD_PRELOAD", &so)],
        &["ls", "-R", "-l", tree.to_str().unwrap()],
    );
    check_all(&trace, &dir, 1);
}

#[test]
fn shell_forks_and_execs() {
    if !strace_works() {
        return;
    }
    let dir = tmpdir("sh");
    let so = preload(&dir);
    let d = dir.display().to_string();
    let trace = record(
        &dir,
        "sh",
        &[("VMSPACE_MAPS_DIR", &d), ("LD_PRELOAD", &so)],
        &[
            "sh",
            "-c",
            "cat /proc/self/maps > cat.maps; ls / > /dev/null; (true; cat /dev/null) | cat > /dev/null",
        ],
    );
    check_all(&trace, &dir, 3);
    // `cat /proc/self/maps > cat.maps` shows cat's map while it ran, not at its end (cat frees its
    // buffer afterwards): the preload's dump at exit is the one compared above.
    assert!(dir.join("cat.maps").exists());
}

const THREADS_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char buf[1 << 20];
static char path[4096];
static void dump(const char *dir) {
    size_t n = 0;
    while (dir[n] && n < 4000) { path[n] = dir[n]; n++; }
    const char *m = "/maps.";
    for (int i = 0; m[i]; i++) path[n++] = m[i];
    char digits[16]; int d = 0; int pid = getpid();
    do { digits[d++] = '0' + pid % 10; pid /= 10; } while (pid);
    while (d) path[n++] = digits[--d];
    path[n] = 0;
    int in = open("/proc/self/maps", O_RDONLY);
    ssize_t len = 0, r;
    while ((r = read(in, buf + len, sizeof buf - len)) > 0) len += r;
    close(in);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ssize_t w = 0;
    while (w < len && (r = write(out, buf + w, len - w)) > 0) w += r;
    close(out);
}

static void *worker(void *arg) {
    (void)arg;
    for (int k = 0; k < 60; k++) {
        char *p = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        mprotect(p + 4096, 4096, PROT_READ);
        if (k % 3 == 0) {
            munmap(p, 64 << 10);
        } else if (k % 3 == 1) {
            p = mremap(p, 64 << 10, 128 << 10, MREMAP_MAYMOVE);
            madvise(p, 8192, MADV_DONTNEED);
        } else {
            madvise(p, 64 << 10, MADV_RANDOM);
            madvise(p + 8192, 8192, MADV_SEQUENTIAL);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    (void)argc;
    const char *dir = getenv("VMSPACE_MAPS_DIR");
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], 0, worker, (void *)i);
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);

    char *a = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    madvise(a, 4 * 4096, MADV_DONTFORK);
    madvise(a + 4 * 4096, 4 * 4096, MADV_WIPEONFORK);
    mlock(a + 8 * 4096, 4096);
    madvise(a + 12 * 4096, 4 * 4096, MADV_DONTDUMP);
    mmap(a + 14 * 4096, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    madvise(a + 2 * 4096, 4096, MADV_DOFORK);

    char *s = mmap(NULL, 8 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    mprotect(s, 4096, PROT_READ);
    madvise(s + 4096, 4096, MADV_DONTFORK);

    char *g = mmap(NULL, 8 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(g + 4 * 4096, 4 * 4096);
    mremap(g, 4 * 4096, 8 * 4096, 0);
    mremap(g, 8 * 4096, 2 * 4096, 0);

    mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
    char *d = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mremap(d, 4 * 4096, 4 * 4096, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    char *f = mmap(NULL, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mremap(f, 8 * 4096, 16 * 4096, MREMAP_MAYMOVE | MREMAP_FIXED, d + 64 * 4096);

    int fd = open(argv[0], O_RDONLY);
    char *file = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 0);
    mprotect(file, 4096, PROT_READ | PROT_WRITE);
    close(fd);

    char *sealed = mmap(NULL, 4 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    syscall(462, sealed, 4 * 4096, 0); /* mseal, Linux 6.10+ */
    munmap(sealed, 4096);              /* refused: EPERM */

    int seg = shmget(IPC_PRIVATE, 3 * 4096 + 100, IPC_CREAT | 0600);
    char *s1 = shmat(seg, NULL, 0);
    char *s2 = shmat(seg, NULL, SHM_RDONLY);
    munmap(s1 + 4096, 4096);
    shmdt(s1);
    shmdt(s2 + 4096); /* refused: EINVAL */
    char *s3 = shmat(seg, NULL, 0);
    munmap(s3, 4096);
    shmdt(s3);        /* detaches the rest: its first VMA left starts one page in, offset 1 */
    shmctl(seg, IPC_RMID, NULL);

    void *b0 = sbrk(0);
    sbrk(256 << 10);
    sbrk(-(128 << 10));
    (void)b0;

    pid_t c = fork();
    if (c == 0) {
        mmap(NULL, 3 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        munmap(a + 4 * 4096, 4096);
        dump(dir);
        _exit(0);
    }
    waitpid(c, 0, 0);
    pid_t v = vfork();
    if (v == 0) {
        execl("/bin/true", "true", (char *)0);
        _exit(1);
    }
    waitpid(v, 0, 0);
    mlockall(MCL_CURRENT);
    munlockall();
    dump(dir);
    _exit(0);
}
"#;

#[test]
fn threaded_c_program() {
    if !strace_works() {
        return;
    }
    let dir = tmpdir("cthreads");
    let exe = cc(&dir, "threads", THREADS_C, &["-O1", "-pthread"]);
    let d = dir.display().to_string();
    let trace = record(&dir, "threads", &[("VMSPACE_MAPS_DIR", &d)], &[exe.to_str().unwrap()]);
    check_all(&trace, &dir, 2);
    let (rep, _) = vmspace_cli::replay::replay(&vmspace_cli::replay::Options {
        trace: trace.clone(),
        ..Default::default()
    })
    .unwrap();
    // Four threads and the main one share the first space; the fork has its own, /bin/true its own.
    let main = rep.target(Some(dumps(&dir)[0].0)).unwrap();
    assert!(rep.spaces[main].pids.len() >= 5, "threads share the space: {:?}", rep.spaces[main].pids);
    assert!(rep.spaces.iter().any(|s| s.program().ends_with("/true")));
    assert_eq!(rep.warnings_total, 0, "{:?}", rep.warnings);
}
