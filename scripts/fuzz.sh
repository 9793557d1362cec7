#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) with cargo fuzz for SECONDS
# each (default 20), starting from the seeds in fuzz/seeds/<target> and the
# corpus kept in fuzz/corpus/<target>. Needs a nightly toolchain (libFuzzer
# and sanitizers); installs cargo-fuzz from crates.io when it is missing.
# A crash fails the run and leaves the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh            short run (CI)
#   scripts/fuzz.sh 600        long run: ten minutes per target
#   scripts/fuzz.sh 60 policy  one target
#
# ZFSREPL_FUZZ_RUNS=N stops each target after N executions (within the time
# limit); ZFSREPL_FUZZ_SANITIZER=none builds without AddressSanitizer (the
# fuzzed code has no unsafe: panics are what is hunted, several times faster).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-20}
shift || true
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: a nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
san=(-s "${ZFSREPL_FUZZ_SANITIZER:-address}")
runs_limit=()
[ -n "${ZFSREPL_FUZZ_RUNS:-}" ] && runs_limit=(-runs="$ZFSREPL_FUZZ_RUNS")
cargo +nightly fuzz build -O "${san[@]}"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  log=$(mktemp)
  start=$(date +%s)
  if ! cargo +nightly fuzz run -O "${san[@]}" "$t" "corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$secs" "${runs_limit[@]}" -rss_limit_mb=2048 -max_len=65536 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $t FAILED (input saved under fuzz/artifacts/$t)" >&2
    exit 1
  fi
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' | tail -1)
  echo "fuzz: $t: ${runs:-?} executions in $(($(date +%s) - start))s (${san[1]}), no crash"
  rm -f "$log"
done
