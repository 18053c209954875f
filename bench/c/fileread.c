/*
 * fileread: 256 goroutines read a file of n MiB together, each its 1/256 share in 64 KiB preads
 * (hoare_fd_pread: through io_uring where the kernel allows it, else in a blocking region).
 * argv[2] "cold": the file's pages are dropped from the cache first (posix_fadvise DONTNEED, which
 * works for clean pages: the file is fsync'ed), so the reads wait for the disk; "warm": the file is
 * read once untimed, so the reads are served from the page cache.
 * Result: ms for the whole file. Twin: bench/go/fileread/main.go (os.File.ReadAt).
 */
#include "bench.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define READERS 256
#define CHUNK (64 * 1024)

static struct {
    long mib;
    bool cold;
    int fd;
    char path[256];
    hoare_wg wg;
    _Atomic long bad;
} w;

static void reader(void *p) {
    off_t share = (off_t)w.mib * 1024 * 1024 / READERS, start = share * (off_t)(intptr_t)p;
    char *buf = malloc(CHUNK);
    if (!buf) bench_fail("out of memory");
    for (off_t off = start; off < start + share; off += CHUNK) {
        size_t want = (size_t)(start + share - off < CHUNK ? start + share - off : CHUNK);
        ssize_t n = hoare_fd_pread(w.fd, buf, want, off);
        /* every 8-byte word holds its own offset */
        if (n != (ssize_t)want || *(uint64_t *)buf != (uint64_t)off) atomic_fetch_add(&w.bad, 1);
    }
    free(buf);
    hoare_wg_done(&w.wg);
}

static void make_file(void) {
    const char *dir = getenv("TMPDIR");
    snprintf(w.path, sizeof w.path, "%s/hoare_fileread_%d", dir && *dir ? dir : "/tmp", (int)getpid());
    int fd = open(w.path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) bench_fail("create %s: %s", w.path, strerror(errno));
    uint64_t *block = malloc(CHUNK);
    if (!block) bench_fail("out of memory");
    for (uint64_t off = 0; off < (uint64_t)w.mib << 20; off += CHUNK) {
        for (size_t i = 0; i < CHUNK / 8; i++) block[i] = off + i * 8;
        if (write(fd, block, CHUNK) != CHUNK) bench_fail("write: %s", strerror(errno));
    }
    free(block);
    if (fsync(fd) != 0) bench_fail("fsync: %s", strerror(errno));
    close(fd);
}

static void run(void *arg) {
    (void)arg;
    w.fd = open(w.path, O_RDONLY | O_CLOEXEC);
    if (w.fd < 0) bench_fail("open: %s", strerror(errno));
    if (w.cold) {
        (void)posix_fadvise(w.fd, 0, 0, POSIX_FADV_DONTNEED);
    } else {
        char *buf = malloc(CHUNK);
        for (off_t off = 0; buf && off < (off_t)w.mib << 20; off += CHUNK) (void)!pread(w.fd, buf, CHUNK, off);
        free(buf);
    }
    int64_t t0 = hoare_now();
    for (intptr_t i = 0; i < READERS; i++) {
        hoare_wg_add(&w.wg, 1);
        BENCH_OK(hoare_go(reader, (void *)i));
    }
    hoare_wg_wait(&w.wg);
    int64_t elapsed = hoare_now() - t0;
    hoare_fd_close(w.fd);
    unlink(w.path);
    if (atomic_load(&w.bad)) bench_fail("fileread: %ld chunks wrong", atomic_load(&w.bad));
    char name[32];
    snprintf(name, sizeof name, "fileread-%s", w.cold ? "cold" : "warm");
    bench_result(name, w.mib, (double)elapsed / 1e6, "ms");
}

int main(int argc, char **argv) {
    w.mib = bench_size(argc, argv, 256);
    w.cold = argc < 3 || strcmp(argv[2], "warm") != 0;
    if (w.mib * 1024 * 1024 % ((long)READERS * 8) != 0) bench_fail("size must be a multiple of 1 MiB");
    make_file();
    bench_run(run, NULL);
    return 0;
}
