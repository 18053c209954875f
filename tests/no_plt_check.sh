#!/bin/sh
# no_plt_check.sh OBJDUMP PROGRAM - the runtime's code in a program linked with the static library
# (its section hoare_text) calls no other library through a PLT stub. A stub sits in the program's
# own text, which preemption takes for a safe point (src/preempt.c): a goroutine interrupted in one
# is switched out in the middle of the runtime (under ASan it was caught between the two halves of
# a switch). The build compiles the runtime with -fno-plt (CMakeLists.txt).
set -eu
objdump=$1
program=$2
listing=$("$objdump" -d --section=hoare_text "$program")
instructions=$(printf '%s\n' "$listing" | grep -c '^ *[0-9a-f][0-9a-f]*:' || true)
if [ "$instructions" -lt 1000 ]; then
    echo "no_plt_check: $program has no hoare_text section to check ($instructions instructions)" >&2
    exit 1
fi
stubs=$(printf '%s\n' "$listing" | grep '@plt>' || true)
if [ -n "$stubs" ]; then
    echo "no_plt_check: the runtime's code in $program calls through PLT stubs:" >&2
    printf '%s\n' "$stubs" | head -20 >&2
    echo "($(printf '%s\n' "$stubs" | wc -l) calls in all)" >&2
    exit 1
fi
echo "no_plt_check: $instructions instructions in hoare_text, no call through a PLT stub"
