#!/usr/bin/env bash
# Records a corpus of real program runs with `vmspace record` and replays each with `vmspace replay
# --exact`: per run the calls, the exit snapshots that equal the kernel's, and the placements
# predicted; then the totals. A snapshot differs only where Mm's inference of what no call shows
# (an anon_vma that a write fault made) decided a merge wrongly, or where Mm is wrong: the figure
# for "how often the inference is right".
# Usage: bench/exact-corpus.sh [VMSPACE]   (default: target/release/vmspace; build it first)
set -euo pipefail
V=${1:-target/release/vmspace}
V=$(realpath "$V")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
seq 1 300000 | sort -R --random-source=/dev/zero > nums.txt
printf 'int f(int x) { return x * 2; }\n' > x.c
git init -q repo && (cd repo && for i in $(seq 1 50); do echo "$i" > "f$i"; done && git add . &&
  git -c user.name=a -c user.email=a@b commit -qm m)
runs=(
  "python3 -c pass"
  "python3 -c import\ json,threading;b=[bytearray(300000)\ for\ _\ in\ range(200)]"
  "node -e 1"
  "node -e const\ a=[];for(let\ i=0;i<200;i++)a.push(Buffer.alloc(1<<20))"
  "java -version"
  "java -Xmx64m -version"
  "java -XX:+UseSerialGC -version"
  "gcc -O2 -c x.c -o x.o"
  "gcc -O0 x.c -c -o y.o"
  "git -C repo status"
  "git -C repo log --stat"
  "xz -6 -k -f nums.txt"
  "xz -9 -T2 -k -f -c nums.txt"
  "sqlite3 db.sqlite create\ table\ if\ not\ exists\ t(x);insert\ into\ t\ select\ value\ from\ generate_series(1,50000);select\ count(*)\ from\ t;"
  "perl -e my\ %h=map{\$_=>1}1..200000;print\ scalar(keys\ %h)"
  "sort --parallel=2 -S 50M -o sorted.txt nums.txt"
  "sort -n -o sorted2.txt nums.txt"
  "sh -c ls\ /usr/bin|wc\ -l"
)
printf '%-72s %7s %9s %11s\n' RUN CALLS SNAPSHOTS PLACEMENTS
tc=0; ts=0; te=0; tp=0; tq=0
for r in "${runs[@]}"; do
  read -r -a cmd <<< "${r//\\ /$'\x1f'}"
  cmd=("${cmd[@]//$'\x1f'/ }")
  "$V" record -o t.rec -- "${cmd[@]}" > /dev/null 2>&1 || { echo "record failed: $r" >&2; continue; }
  j=$("$V" replay --exact --json t.rec || true)
  read -r c s d p q < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["calls"], d["snapshots"], d["maps_differ"], d["placements"], d["placements_equal"])' "$j")
  printf '%-72s %7d %5d/%-3d %6d/%-5d\n' "${r//\\ / }" "$c" $((s - d)) "$s" "$q" "$p"
  tc=$((tc + c)); ts=$((ts + s)); te=$((te + s - d)); tp=$((tp + p)); tq=$((tq + q))
done
printf '%-72s %7d %5d/%-3d %6d/%-5d\n' "all ${#runs[@]} runs" "$tc" "$te" "$ts" "$tq" "$tp"
