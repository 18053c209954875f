# hoare - top-level commands. Each target installs what it needs on a fresh Debian machine.
#   make demo     build and run the demonstration (concurrency vs parallelism), draw its traces
#   make test     build and run the whole suite three ways: optimised, ASan+UBSan, TSan
#   make test-aarch64  the suite cross-built for AArch64, run under qemu-user
#   make install  install the libraries, header, pkg-config file and CMake package (PREFIX=/usr/local)
#   make bench    run the benchmarks side by side with Go and write docs/BENCHMARKS.md
#   make bench-trace  what the trace hooks cost on pingpong while tracing is off (must be < 2%)
#   make build    just the optimised build (build/rel)
#   make fuzz     run the libFuzzer targets for FUZZ_TIME seconds each (fuzz/)
#   make soak     the mixed workload for DURATION (e.g. DURATION=30m), with leak checkpoints

PREFIX ?= /usr/local
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# warnings are errors in CI, and on request (WERROR=ON)
WERROR ?= $(if $(CI),ON,OFF)
# python3, golang-go and wrk: the benchmarks' quick mode runs in the suite, both C and Go sides
DEB_PKGS := cmake make gcc g++ clang pkg-config valgrind libc6-dev python3 golang-go wrk
# diagnostics: libdw for tracebacks, gdb for the gdb extension's test, gnuplot for make demo's picture
DEB_PKGS += libdw-dev gdb gnuplot-nox
# the optional integrations (docs/design.md, "Real programs' I/O"): c-ares (name resolution),
# liburing (files that park), OpenSSL (libhoare_tls) and the tools its test drives (openssl, curl),
# hiredis and redis-server (the database example and its test)
DEB_PKGS += libc-ares-dev liburing-dev libssl-dev openssl curl libhiredis-dev redis-server
CMAKE_FLAGS := -DHOARE_WERROR=$(WERROR)

.PHONY: bench-trace all deps build demo test test-rel test-asan test-tsan test-clang test-aarch64 install bench clean \
	test-fuzz fuzz fuzz-build harden-deps test-aarch64-subset soak

all: build

deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

build/rel/Makefile: deps
	cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: build/rel/Makefile
	cmake --build build/rel -j $(JOBS)

# The demo also traces its two runs and draws them (build/rel/demo-trace.png; the README shows
# docs/demo-trace.png, a copy from one such run).
demo: build
	./build/rel/examples/demo --trace build/rel/demo-trace
	python3 examples/demo_timeline.py build/rel/demo-trace-1.json build/rel/demo-trace-2.json build/rel/demo-trace.png

# The suite three ways. TSan needs the address space layout it was built for: run it without ASLR
# (setarch -R), as its runtime cannot handle the high mmap entropy of recent kernels.
test: test-rel test-asan test-tsan test-clang test-fuzz test-aarch64-subset
	@echo "all builds passed"

test-rel: deps
	cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	cmake --build build/rel -j $(JOBS)
	cd build/rel && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOARE_SANITIZE=address -DHOARE_FAULT_INJECTION=ON -DHOARE_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build build/asan -j $(JOBS)
	cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

test-tsan: deps
	cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOARE_SANITIZE=thread -DHOARE_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build build/tsan -j $(JOBS)
	cd build/tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 setarch -R ctest --output-on-failure -j $(JOBS)

# The library must also build warning-free with clang.
test-clang: deps
	CC=clang cmake -S . -B build/clang -DCMAKE_BUILD_TYPE=Release -DHOARE_TESTS=OFF -DHOARE_BENCH=OFF -DHOARE_WERROR=ON >/dev/null
	cmake --build build/clang -j $(JOBS)

# The AArch64 context switch and everything above it, cross-built and run under qemu-user. Not part
# of `make test`: emulation is slow and its timing too uneven for the suite's timing checks.
test-aarch64: deps
	@missing=""; for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release -DHOARE_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build build/aarch64 -j $(JOBS)
	cd build/aarch64 && ctest --output-on-failure -j $(JOBS)

install: build
	cmake -S . -B build/rel -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build build/rel -j $(JOBS)
	$(SUDO) cmake --install build/rel
	-$(SUDO) ldconfig

# Full side-by-side run (about 10 minutes): writes docs/BENCHMARKS.md and docs/bench-ratios.png.
bench: deps
	sh bench/bench.sh

# What the execution-trace hooks cost while tracing is off (callgrind instruction counts, < 2%).
bench-trace: deps
	sh bench/trace_overhead.sh

clean:
	rm -rf build

# ---- Hardening (issue 13): fuzzing, fault injection, the AArch64 subset, the soak.
# clang's libFuzzer and sanitizer runtimes; the cross toolchain and qemu-user for the AArch64 subset.
HARDEN_PKGS := clang libclang-rt-14-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
FUZZ_TIME ?= 300
FUZZ_CI_TIME ?= 55

harden-deps: deps
	@missing=""; for p in $(HARDEN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

# The fuzz build: clang, ASan+UBSan, coverage on the library too.
build/fuzz/Makefile: harden-deps
	CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOARE_SANITIZE=address -DHOARE_FUZZ=ON \
	  -DHOARE_TESTS=OFF -DHOARE_BENCH=OFF -DHOARE_EXAMPLES=OFF -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link >/dev/null

fuzz-build: build/fuzz/Makefile
	cmake --build build/fuzz -j $(JOBS)

# FUZZ_TIME seconds per target; fails on a finding.
fuzz: fuzz-build
	sh fuzz/run.sh build/fuzz $(FUZZ_TIME)

# The bounded run of the suite: FUZZ_CI_TIME seconds per target.
test-fuzz: fuzz-build
	sh fuzz/run.sh build/fuzz $(FUZZ_CI_TIME)

# The soak: the mixed workload against the HTTP example for DURATION (30s, 10m, 1h), a checkpoint
# every SOAK_CHECKPOINT; its report goes to stdout (docs/soak.md keeps the last long one). A 20 s run
# is part of test-rel (ctest soak_short).
DURATION ?= 60s
SOAK_CHECKPOINT ?= 10s
soak: build
	nice ./build/rel/soak --duration $(DURATION) --round-seconds $(SOAK_CHECKPOINT) --server build/rel/examples/http_hello

# AArch64 under qemu-user, in the suite: the context switch and what stands on it - runtime locks,
# scheduler, stacks, channels, select, timers, sync, contexts, misuse. Left out, with the reason:
#   test_preempt, test_procs      timing: preemption slices (10 ms, SIGURG) and windows of parallel
#                                 progress, which emulation on a shared machine stretches unevenly
#   test_chan_stress, test_select_stress  minutes of emulated work; the fuzzer covers the races
#   test_fdio*, test_net*, test_diag, test_fault  I/O, the poller and child-process scenarios: not
#                                 architecture code (the full `make test-aarch64` runs them)
AARCH64_SUBSET := test_lock test_stack test_sched test_chan_basic test_chan_go test_chan_typed test_select \
  test_time test_mutex test_rwmutex test_wg test_once test_cond test_sem test_context test_misuse test_harden
test-aarch64-subset: harden-deps
	cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release -DHOARE_BENCH=OFF -DHOARE_EXAMPLES=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build build/aarch64 -j $(JOBS) --target $(AARCH64_SUBSET)
	cd build/aarch64 && ctest --output-on-failure -j $(JOBS) -R "^($(shell echo $(AARCH64_SUBSET) | tr ' ' '|'))$$"
