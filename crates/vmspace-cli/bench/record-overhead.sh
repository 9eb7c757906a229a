#!/usr/bin/env bash
# The overhead of `vmspace record` against `strace -f -e trace=memory,process`: median wall time of
# 5 runs of each workload plain, under strace and under vmspace record (after
# `cargo build --release -p vmspace-cli`). Not a test; needs strace, python3, bc.
set -euo pipefail
V=${VMSPACE:-$(dirname "$0")/../../../target/release/vmspace}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
run() {
  local name=$1; shift
  local p s v
  p=$(for _ in 1 2 3 4 5; do t "$@"; done | med)
  s=$(for _ in 1 2 3 4 5; do t strace -f -qq -e trace=memory,process -o "$out/s" "$@"; done | med)
  v=$(for _ in 1 2 3 4 5; do t "$V" record -o "$out/v" -- "$@"; done | med)
  printf "%-32s plain %.3fs  strace -f %.3fs (%.2fx)  record %.3fs (%.2fx)\n" "$name" "$p" "$s" \
    "$(echo "$s/$p" | bc -l)" "$v" "$(echo "$v/$p" | bc -l)"
}
run "ls -lR /usr/lib" ls -lR /usr/lib
run "python3, 20000 300 KB buffers" python3 -c "
for i in range(20000): b = bytearray(300000)"
run "sh, 200 forks + execs" sh -c 'for i in $(seq 200); do /bin/true; done'
