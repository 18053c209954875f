#!/bin/sh
# demo_trace.sh DEMO CHECKER OUTDIR [--no-turns]: run the demo with a short count, tracing both runs,
# and check the traces (tests/trace_check.py demo): one processor takes turns without overlap, two
# overlap.
set -eu
demo=$1 checker=$2 out=$3
shift 3
mkdir -p "$out"
HOARE_DEMO_COUNT=200000000 "$demo" --trace "$out/demo" >/dev/null
exec python3 "$checker" demo "$out/demo-1.json" "$out/demo-2.json" "$@"
