#!/bin/sh
# trace_overhead.sh [ROUNDTRIPS]: what the execution-trace (and statistics) hooks cost while
# tracing is off, on the pingpong benchmark: the library is built with the hooks (the default)
# and without any (-DHOARE_TRACE_HOOKS=OFF), and valgrind's callgrind counts the instructions each
# pingpong runs (deterministic, unlike wall-clock time on a shared machine). Fails if the hooks add
# 2% or more.
# `make bench-trace` runs it.
set -eu
n=${1:-200000}
root=$(cd "$(dirname "$0")/.." && pwd)
count() { # build dir -> instructions of bench_pingpong
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1/bench/bench_pingpong" "$n" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for v in ON OFF; do
    cmake -S "$root" -B "$root/build/trace-hooks-$v" -DCMAKE_BUILD_TYPE=Release -DHOARE_TESTS=OFF \
        -DHOARE_EXAMPLES=OFF -DHOARE_TRACE_HOOKS=$v >/dev/null
    cmake --build "$root/build/trace-hooks-$v" -j 2 --target bench_pingpong >/dev/null
done
on=$(count "$root/build/trace-hooks-ON")
off=$(count "$root/build/trace-hooks-OFF")
python3 - "$on" "$off" "$n" <<'PY'
import sys
on, off, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cost = (on - off) / off * 100
print(f"pingpong, {n} round trips: {on} instructions with the trace and statistics hooks (off), "
      f"{off} without: {cost:+.2f}%")
sys.exit(0 if cost < 2.0 else 1)
PY
