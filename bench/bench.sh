#!/bin/sh
# `make bench`: install what the benchmarks need if it is missing (Go, wrk, gnuplot; Debian/Ubuntu
# packages, with apt-get), then run bench/run.py with the given arguments (default: the full run,
# which writes docs/BENCHMARKS.md).
set -eu
missing=""
command -v go >/dev/null 2>&1 || missing="$missing golang-go"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
if [ -n "$missing" ]; then
    echo "bench: installing$missing" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    # shellcheck disable=SC2086 # one word per package
    $sudo apt-get install -y $missing
fi
exec python3 "$(dirname "$0")/run.py" "$@"
