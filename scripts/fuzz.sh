#!/usr/bin/env bash
# Fuzzes what Portolan reads from outside with libFuzzer: each target in fuzz/fuzz_targets for
# SECONDS (default 60), starting from its checked-in corpus in fuzz/corpus/<target>.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# New inputs that reach new code go to fuzz/target/new-corpus/<target> (not into the repository);
# `--merge` folds them into the checked-in corpus first, minimised. A crash stops the run and
# leaves its input in fuzz/artifacts/<target>/: make it a regression test.
# Needs only the stable toolchain and a C++ compiler (libFuzzer builds from source); the same
# targets run with `cargo fuzz run <target> --sanitizer none` where cargo-fuzz is installed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

merge=false
if [ "${1:-}" = "--merge" ]; then merge=true; shift; fi
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi

# cargo-fuzz's instrumentation without a sanitizer: Rust code is memory-safe, and the fuzzers
# look for panics (failed assertions, overflow, out-of-bounds indexing) and hangs.
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --target "$host" --bins
bin="target/$host/release"

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "target/new-corpus/$target" "artifacts/$target"
  if $merge; then
    "$bin/$target" -merge=1 "corpus/$target" "target/new-corpus/$target" >"target/merge-$target.log" 2>&1
  fi
  echo "== $target: ${seconds}s from $(ls "corpus/$target" | wc -l) inputs"
  log="target/$target.log"
  "$bin/$target" "target/new-corpus/$target" "corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 >"$log" 2>&1 || true
  grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" | tr '\n' ' '
  echo
  if [ -n "$(ls "artifacts/$target")" ]; then
    grep -A8 -E 'panicked at|ERROR: libFuzzer' "$log" | head -40 >&2
    echo "!! $target failed; its input is in fuzz/artifacts/$target, the whole log in fuzz/$log" >&2
    exit 1
  fi
done
