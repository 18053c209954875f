#!/bin/sh
# demo_trace.sh DEMO CHECKER OUTDIR [--no-turns]: run the demo with a short count, tracing both runs,
# and check the traces (tests/trace_check.py demo): one processor takes turns without overlap, two
# overlap.
# Up to 3 attempts: on a heavily loaded machine the second thread can start so late that both
# goroutines have already been preempted on the first thread, and a preempted goroutine resumes on
# its own thread only (docs/design.md, Preemption): that run has no parallelism to show.
set -eu
demo=$1 checker=$2 out=$3
shift 3
mkdir -p "$out"
for attempt in 1 2 3; do
    HOARE_DEMO_COUNT=200000000 "$demo" --trace "$out/demo" >/dev/null
    if python3 "$checker" demo "$out/demo-1.json" "$out/demo-2.json" "$@"; then exit 0; fi
    echo "attempt $attempt failed"
done
exit 1
