#!/bin/sh
# fuzz/run.sh BUILD_DIR SECONDS - run each libFuzzer target for SECONDS, starting from the committed
# seed corpus (fuzz/corpus/<target>, read-only) plus what earlier runs found (BUILD_DIR/corpus/<target>).
# Exit status 1 on a finding: the input is saved as BUILD_DIR/findings/<target>-crash-*, the log in
# BUILD_DIR/<target>.log. Reproduce with: BUILD_DIR/fuzz/<target> FILE
set -u
build=$1
secs=$2
src=$(cd "$(dirname "$0")" && pwd)
status=0
mkdir -p "$build/findings"
for t in chan http; do
  mkdir -p "$build/corpus/$t"
  echo "fuzz_$t: ${secs}s"
  # -timeout: one input running a minute is a hang; -max_len: the largest program fuzz_chan decodes
  # (135 bytes) with room, and full request heads for fuzz_http.
  if [ $t = chan ]; then maxlen=160; else maxlen=1024; fi
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=60 -max_len=$maxlen -print_final_stats=1 \
      -artifact_prefix="$build/findings/$t-" "$build/corpus/$t" "$src/corpus/$t" >"$build/fuzz_$t.log" 2>&1
  rc=$?
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$build/fuzz_$t.log" | sed "s/^/  fuzz_$t /"
  if [ $rc -ne 0 ]; then
    echo "fuzz_$t: FINDING (exit $rc), see $build/fuzz_$t.log"
    grep -E 'oracle|ERROR|SUMMARY|Test unit written' "$build/fuzz_$t.log" | head -20
    status=1
  fi
done
exit $status
