#!/usr/bin/env python3
"""Preload benchmark: real programs under glibc, jemalloc, mimalloc and vmspace-malloc, in one run.

  cargo build --release -p vmspace-malloc
  python3 crates/vmspace-malloc/bench/preload.py [--runs 5] [--lib target/release/libvmspace_malloc.so]

For each workload and allocator (runs interleaved round-robin): the output's SHA-256 must equal the
glibc run's; wall time (median of --runs; for workloads with an idle phase, the busy phase only), peak
RSS (wait4's ru_maxrss) and, where the program has an idle phase, VmRSS 2 s after the busy phase ends
(the program prints BUSY_DONE, then waits on stdin while /proc/PID/status is read). Not a test.
"""
import argparse, hashlib, os, statistics, subprocess, sys, tempfile, time

LIBDIR = "/usr/lib/%s-linux-gnu" % os.uname().machine
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"

PY_BUFFERS = r"""
import hashlib, random, sys
r = random.Random(7); pool = [None] * 24; h = hashlib.sha256()
for i in range(6000):
    n = r.choice((256, 512, 1024, 2048, 4096, 8192)) * 1024 + r.randrange(4096)
    b = bytearray(n); b[::4096] = bytes([i & 255]) * len(b[::4096])
    k = r.randrange(len(pool)); pool[k] = b
    if i % 97 == 0: h.update(bytes(b[-64:]))
del pool, b
print(h.hexdigest()); print("BUSY_DONE", flush=True); sys.stdin.read()
"""

PY_STRINGS = r"""
import sys, zlib
acc = 0
for rnd in range(12):
    parts = [("%d-" % i) * 50 for i in range(20000)]
    s = "".join(parts); b = s.encode() * 3
    acc = zlib.crc32(b, acc); d = {i: b[i:i + 300000] for i in range(0, 3000000, 300000)}
    acc += sum(len(v) for v in d.values())
    del parts, s, b, d
print(acc); print("BUSY_DONE", flush=True); sys.stdin.read()
"""

SQL = """
CREATE TABLE t(a INTEGER, b TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)
INSERT INTO t SELECT x, printf('%0200d', (x * 7919) % 1000003) FROM c;
SELECT count(*), sum(length(b)) FROM (SELECT b FROM t ORDER BY b DESC);
SELECT length(group_concat(b, ',')) FROM t;
CREATE INDEX tb ON t(b);
SELECT count(DISTINCT substr(b, 1, 190)) FROM t;
DROP TABLE t;
SELECT 'BUSY_DONE';
"""


def make_inputs(d):
    lines = os.path.join(d, "lines.txt")
    with open(lines, "w") as f:
        x = 88172645463325252
        for i in range(1500000):
            x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF; x ^= x >> 7; x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
            f.write("%d %s\n" % (x % 1000000007, "abcdefgh"[x % 8] * (x % 23)))
    a, b = os.path.join(d, "a.txt"), os.path.join(d, "b.txt")
    with open(lines) as src, open(a, "w") as fa, open(b, "w") as fb:
        for i, l in enumerate(src):
            if i >= 400000: break
            fa.write(l); fb.write(l if i % 1000 else "changed %d\n" % i)
    small = os.path.join(d, "small.txt")
    with open(lines) as src, open(small, "w") as f:
        for i, l in enumerate(src):
            if i >= 150000: break
            f.write(l)
    return lines, a, b, small


def workloads(d):
    lines, a, b, small = make_inputs(d)
    return [
        # name, argv, stdin bytes (None: the idle protocol), has idle phase
        ("python3 buffers", [PY, "-c", PY_BUFFERS], None, True),
        ("python3 strings", [PY, "-c", PY_STRINGS], None, True),
        ("sqlite3", ["sqlite3", ":memory:"], SQL.encode(), True),
        ("xz -6", ["xz", "-6", "-c", "-T1", small], b"", False),
        ("sort", ["sort", "-S", "200M", lines], b"", False),
        ("git diff", ["git", "diff", "--no-index", "--stat", "--patience", a, b], b"", False),
    ]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def run_once(argv, stdin, idle, preload):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    out = b""
    idle_rss = None
    if idle:
        if stdin:
            p.stdin.write(stdin); p.stdin.flush()
        while True:
            line = p.stdout.readline()
            if not line or line.strip() == b"BUSY_DONE":
                break
            out += line
        busy = time.perf_counter() - t0
        time.sleep(2.0)
        idle_rss = rss_kib(p.pid)
        p.stdin.close()
        out += p.stdout.read()
    else:
        p.stdin.write(stdin); p.stdin.close()
        out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    if not idle:
        busy = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return hashlib.sha256(out).hexdigest()[:16], p.returncode, busy, ru.ru_maxrss, idle_rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lib", default=os.path.join(os.path.dirname(__file__), "../../../target/release/libvmspace_malloc.so"))
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    lib = os.path.abspath(args.lib)
    allocs = [("glibc", None), ("jemalloc", LIBDIR + "/libjemalloc.so.2"), ("mimalloc", LIBDIR + "/libmimalloc.so.2"), ("vmspace", lib)]
    for name, path in allocs:
        if path and not os.path.exists(path):
            sys.exit("missing %s: %s" % (name, path))
    with tempfile.TemporaryDirectory() as d:
        rows = []
        for wname, argv, stdin, idle in workloads(d):
            if args.only and args.only not in wname:
                continue
            res = {a: [] for a, _ in allocs}
            for _ in range(args.runs):
                for a, path in allocs:
                    res[a].append(run_once(argv, stdin, idle, path))
            ref = res["glibc"][0][:2]
            for a, _ in allocs:
                runs = res[a]
                same = all(r[:2] == ref for r in runs)
                wall = statistics.median(r[2] for r in runs)
                peak = statistics.median(r[3] for r in runs) / 1024
                idle_rss = statistics.median(r[4] for r in runs) / 1024 if idle else None
                rows.append((wname, a, same, wall, peak, idle_rss))
        base = {r[0]: r[3] for r in rows if r[1] == "glibc"}
        print("| workload | allocator | output | wall s (median of %d) | vs glibc | peak RSS MiB | RSS 2 s idle MiB |" % args.runs)
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for w, a, same, wall, peak, idle_rss in rows:
            print("| %s | %s | %s | %.3f | %+.1f%% | %.1f | %s |" % (
                w, a, "same" if same else "DIFFERS", wall, 100 * (wall / base[w] - 1), peak,
                "%.1f" % idle_rss if idle_rss is not None else "n/a (exits)"))


if __name__ == "__main__":
    main()
