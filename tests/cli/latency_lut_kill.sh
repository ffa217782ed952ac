#!/usr/bin/env bash
# Kill `qnas latency-lut build` with SIGKILL after its first save (every 200 blocks), run the same command again:
# it must keep every entry measured before the kill (measuring only the rest) and end with every block of the
# space.   latency_lut_kill.sh QNAS OUT
set -uo pipefail
qnas=$1 out=$2
rm -rf "$out"
mkdir -p "$out"
lut="$out/lut.json"
build() { "$qnas" latency-lut build --space fmnistw-151122-000000 --resolutions 28 --runs 50 --warmup 1 --threads 1 --out "$lut"; }

build >"$out/first.log" 2>&1 &
job=$!
for _ in $(seq 2400); do
  [[ -f $lut ]] && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.05
done
if ! kill -9 "$job" 2>/dev/null; then
  echo "FAIL: the build ended before its first save and could not be killed"
  cat "$out/first.log"
  exit 1
fi
wait "$job" 2>/dev/null
total=$(sed -n 's/.*: \([0-9]*\) distinct blocks.*/\1/p' "$out/first.log")
[[ -n $total ]] || { echo "FAIL: no block count in the first run's output"; cat "$out/first.log"; exit 1; }

build >"$out/second.log" 2>&1 || { echo "FAIL: the resumed build failed"; cat "$out/second.log"; exit 1; }
kept=$(sed -n 's/.*; \([0-9]*\) already in .*/\1/p' "$out/second.log")
read -r entries measured < <(sed -n 's/.*: \([0-9]*\) entries (\([0-9]*\) measured now)/\1 \2/p' "$out/second.log")
echo "killed after $kept of $total blocks; the resumed build measured $measured and ends with $entries"
((kept >= 200)) || { echo "FAIL: fewer than 200 entries survived the kill"; exit 1; }
((entries == total)) || { echo "FAIL: the LUT ends with $entries entries, the space has $total blocks"; exit 1; }
((measured == total - kept)) || { echo "FAIL: entries measured before the kill were measured again"; exit 1; }
echo "resumed: every block measured once"
