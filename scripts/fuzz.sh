#!/usr/bin/env bash
# Fuzzes every parser target in fuzz/ with libFuzzer (clang, ASan + UBSan) for SECONDS each.
#   scripts/fuzz.sh 60            build into ./build-fuzz (or $QNAS_FUZZ_DIR), run each target 60 s
# Installs clang and its libFuzzer runtime from Debian when missing (idempotent). Each target's corpus grows in
# BUILD/corpus/TARGET, seeded from fuzz/seeds/TARGET; a crash leaves its input in BUILD/crashes/TARGET and makes
# the script exit non-zero. Results: a table on stdout and BUILD/fuzz-report.json. An allocation over 2 GiB
# counts as a crash (libFuzzer's -malloc_limit_mb), so a size a header declares must be checked first.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "usage: scripts/fuzz.sh SECONDS   (seconds per target, e.g. 60)" >&2
  exit 2
fi
build=${QNAS_FUZZ_DIR:-build-fuzz}

packages=(clang libclang-rt-14-dev cmake nlohmann-json3-dev libfmt-dev zlib1g-dev libdnnl-dev ocl-icd-opencl-dev
  libopencv-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "fuzz: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "fuzz: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
  fi
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ ! -f $build/CMakeCache.txt ]]; then
  CXX=clang++ cmake -S fuzz -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j"$(nproc)" >/dev/null

targets=()
for source in fuzz/fuzz_*.cpp; do
  name=$(basename "$source" .cpp)
  [[ -x $build/$name ]] && targets+=("${name#fuzz_}")
done

status=0
rows=()
printf '| target | runs | exec/s | corpus (files) | new units | peak RSS (MB) | result |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | --- |\n'
for target in "${targets[@]}"; do
  corpus=$build/corpus/$target
  crashes=$build/crashes/$target
  mkdir -p "$corpus" "$crashes"
  [[ -d fuzz/seeds/$target ]] && cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  log=$build/$target.log
  result=ok
  if ! "$build/fuzz_$target" "$corpus" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
      -malloc_limit_mb=2048 -timeout=10 -artifact_prefix="$crashes/" >"$log" 2>&1; then
    result="CRASH (see $log, input in $crashes)"
    status=1
  fi
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  runs=$(stat number_of_executed_units)
  rate=$(stat average_exec_per_sec)
  added=$(stat new_units_added)
  rss=$(stat peak_rss_mb)
  files=$(find "$corpus" -type f | wc -l)
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$target" "${runs:-?}" "${rate:-?}" "$files" "${added:-?}" \
    "${rss:-?}" "$result"
  rows+=("{\"target\": \"$target\", \"seconds\": $seconds, \"runs\": ${runs:-null}, \"exec_per_sec\": ${rate:-null}, \"corpus_files\": $files, \"new_units\": ${added:-null}, \"peak_rss_mb\": ${rss:-null}, \"crashed\": $([[ $result == ok ]] && echo false || echo true)}")
done
report=$build/fuzz-report.json
json="["
separator=""
for row in "${rows[@]}"; do
  json+="$separator"$'\n'"  $row"
  separator=","
done
printf '%s\n]\n' "$json" >"$report.tmp" && mv "$report.tmp" "$report"
echo "written: $report"
exit $status
