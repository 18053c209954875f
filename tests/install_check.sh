#!/usr/bin/env bash
# Install into a temporary prefix, then build a program against it three ways: pkg-config with the
# shared library, pkg-config --static, and the CMake package. Each program must run. When
# libhoare_tls was installed, a TLS program is built through hoare_tls.pc and the CMake package's
# tls component too.
# The program's small-stack goroutines make the first calls of some library functions: the link
# flags that pkg-config and the CMake package give must bind them at load time (lazily bound, the
# dynamic linker's resolver would run on the 1 KiB stack and overflow it).
set -euo pipefail
build_dir=$1
src_dir=$2
prefix=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$prefix" "$work"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
unset LD_BIND_NOW # the binding must come from the link flags
libdir=$(ls -d "$prefix"/lib*/ | head -n1)
export PKG_CONFIG_PATH=$libdir/pkgconfig
cat > "$work/hello.c" <<'C'
#include <hoare.h>
#include <stdio.h>
static hoare_wg small_done;
static void add(void *arg) {
    hoare_chan *c = arg;
    int v = 41;
    hoare_send(c, &v);
}
static void small(void *arg) {
    (void)arg;
    if (hoare_now() > 0) hoare_yield(); /* never called before, by anyone */
    hoare_wg_done(&small_done);
}
int main(void) {
    /* one only: the first sub-page slot of a group sits right above its guard page, so the lazy
     * program below overflows into the guard, not into a neighbour that may be running */
    hoare_attr tiny = {.stack_size = 1024};
    hoare_wg_add(&small_done, 1);
    if (hoare_go_with(&tiny, small, NULL) != 0) return 1;
    hoare_wg_wait(&small_done);
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    hoare_go(add, c);
    int v = 0;
    hoare_recv(c, &v);
    hoare_chan_release(c);
    printf("%d\n", v + 1);
    return v + 1 == 42 ? 0 : 1;
}
C
# shared, found through pkg-config
cc -o "$work/hello_shared" "$work/hello.c" $(pkg-config --cflags --libs hoare) -Wl,-rpath,"$libdir"
"$work/hello_shared" | grep -qx 42
# linked lazily against the advice: where the resolver overflows the small stack (x86-64 with large
# vector registers), the report must name the remedy
cc -o "$work/hello_lazy" "$work/hello.c" $(pkg-config --cflags --libs hoare) -Wl,-z,lazy -Wl,-rpath,"$libdir"
if ! timeout 60 "$work/hello_lazy" >/dev/null 2>"$work/lazy.err"; then
  grep -q 'link it with -Wl,-z,now' "$work/lazy.err" || { cat "$work/lazy.err" >&2; exit 1; }
fi
# static
cc -o "$work/hello_static" "$work/hello.c" $(pkg-config --cflags hoare) "$libdir/libhoare.a" $(pkg-config --libs --static hoare | sed 's/-lhoare//')
"$work/hello_static" | grep -qx 42
# the CMake package
mkdir -p "$work/cm"
cat > "$work/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(hello C)
find_package(hoare REQUIRED)
add_executable(hello ../hello.c)
target_link_libraries(hello PRIVATE hoare::hoare)
CM
cmake -S "$work/cm" -B "$work/cm/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cm/build" >/dev/null
LD_LIBRARY_PATH=$libdir "$work/cm/build/hello" | grep -qx 42
# the same target names for a project that adds the source tree as a subdirectory (configured
# only: the generate step fails on a name that does not exist)
mkdir -p "$work/sub"
cat > "$work/sub/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.16)
project(sub C)
set(HOARE_TESTS OFF CACHE BOOL "" FORCE)
set(HOARE_EXAMPLES OFF CACHE BOOL "" FORCE)
set(HOARE_BENCH OFF CACHE BOOL "" FORCE)
add_subdirectory("$src_dir" hoare)
foreach(t hoare hoare_shared hoare_static)
  add_executable(hello_\${t} ../hello.c)
  target_link_libraries(hello_\${t} PRIVATE hoare::\${t})
endforeach()
CM
cmake -S "$work/sub" -B "$work/sub/build" >/dev/null
if [ -f "$libdir/libhoare_tls.a" ]; then
  cat > "$work/tls.c" <<'C'
#include <hoare_tls.h>
#include <stdio.h>
#include <sys/socket.h>
int main(void) {
    int sv[2];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
    hoare_tls *t = hoare_tls_client(ctx, sv[0], "example.org");
    if (!t || hoare_tls_fd(t) != sv[0]) return 1;
    hoare_fd_close(sv[1]); /* the peer goes away: the handshake fails, it does not hang */
    int err = hoare_tls_handshake(t);
    hoare_tls_free(t);
    SSL_CTX_free(ctx);
    printf("%d\n", err < 0 ? 42 : 0);
    return 0;
}
C
  cc -o "$work/tls" "$work/tls.c" $(pkg-config --cflags --libs hoare_tls) -Wl,-rpath,"$libdir"
  timeout 60 "$work/tls" | grep -qx 42
  mkdir -p "$work/cmtls"
  cat > "$work/cmtls/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(tls C)
find_package(hoare REQUIRED COMPONENTS tls)
add_executable(tls ../tls.c)
target_link_libraries(tls PRIVATE hoare::hoare_tls)
CM
  cmake -S "$work/cmtls" -B "$work/cmtls/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$work/cmtls/build" >/dev/null
  timeout 60 "$work/cmtls/build/tls" | grep -qx 42
fi
echo "1 passed, 0 failed"
