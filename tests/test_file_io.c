/*
 * test_file_io.c - regular files from goroutines: hoare_fd_pread/pwrite (and read/write/readv/writev
 * at the file position) give what pread(2) and friends give, through io_uring where the kernel
 * allows it (hoare_file_io() says "io_uring") and through a blocking region otherwise (forced in a
 * child with HOARE_IO_URING=0), and from plain threads. With one processor, 256 goroutines reading
 * their parts of a file whose pages they keep dropping from the cache (posix_fadvise DONTNEED), so
 * that their reads wait for the disk, leave a ticker ticking for another goroutine; with io_uring
 * the process keeps near one thread per processor meanwhile (the kernel's "iou-wrk" workers aside),
 * where the blocking region needs a thread per waiting read. With four processors, cold reads go
 * through the rings of several processors and every one of them completes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"
#include "uring.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define FILE_SIZE (16 << 20)
#define BLOCK 4096

static char path[64];

static void make_file(void) {
    snprintf(path, sizeof path, "hoare_file_io_%d.dat", (int)getpid()); /* in the build tree */
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    static uint32_t block[BLOCK / 4];
    for (uint32_t off = 0; off < FILE_SIZE; off += BLOCK) {
        for (size_t i = 0; i < BLOCK / 4; i++) block[i] = off + (uint32_t)i * 4; /* each word: its offset */
        REQUIRE(write(fd, block, BLOCK) == BLOCK);
    }
    REQUIRE(fsync(fd) == 0);
    close(fd);
}

/* Every word of a block read at off holds its own offset. */
static bool block_ok(const uint32_t *b, uint32_t off, size_t len) {
    for (size_t i = 0; i < len / 4; i++)
        if (b[i] != off + i * 4) return false;
    return true;
}

static void basics(void *p) {
    bool *done = p;
    char tmp[80];
    snprintf(tmp, sizeof tmp, "%.60s.rw", path);
    int fd = open(tmp, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    CHECK_EQ(hoare_fd_pwrite(fd, "world", 5, 6), 5);
    CHECK_EQ(hoare_fd_pwrite(fd, "hello ", 6, 0), 6);
    char buf[32] = "";
    CHECK_EQ(hoare_fd_pread(fd, buf, sizeof buf, 0), 11);
    CHECK(memcmp(buf, "hello world", 11) == 0);
    CHECK_EQ(hoare_fd_pread(fd, buf, 5, 100), 0); /* past the end */
    CHECK_EQ(hoare_fd_pread(fd, buf, 5, -1), -EINVAL);
    CHECK_EQ(hoare_fd_pwrite(fd, buf, 5, -1), -EINVAL);
    /* the file position: untouched by pread/pwrite, moved by read/write */
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), 0);
    CHECK_EQ(hoare_fd_read(fd, buf, 6), 6);
    CHECK(memcmp(buf, "hello ", 6) == 0);
    CHECK_EQ(hoare_fd_read(fd, buf, 32), 5);
    CHECK(memcmp(buf, "world", 5) == 0);
    CHECK_EQ(hoare_fd_read(fd, buf, 32), 0);
    CHECK_EQ(hoare_fd_write(fd, "!!", 2), 2);
    struct iovec wv[2] = {{"ab", 2}, {"cd", 2}};
    CHECK_EQ(hoare_fd_writev(fd, wv, 2), 4);
    CHECK_EQ(lseek(fd, 11, SEEK_SET), 11);
    char x[3], y[3];
    struct iovec rv[2] = {{x, 3}, {y, 3}};
    CHECK_EQ(hoare_fd_readv(fd, rv, 2), 6);
    CHECK(memcmp(x, "!!a", 3) == 0 && memcmp(y, "bcd", 3) == 0);
    /* a read-only descriptor refuses writes */
    int ro = open(tmp, O_RDONLY | O_CLOEXEC);
    REQUIRE(ro >= 0);
    CHECK_EQ(hoare_fd_pwrite(ro, "z", 1, 0), -EBADF);
    CHECK_EQ(hoare_fd_close(ro), 0);
    /* pread/pwrite have no deadlines (as Go's ReadAt/WriteAt): an expired one does not stop them */
    CHECK_EQ(hoare_fd_set_deadline(fd, hoare_now() - 1), 0);
    CHECK_EQ(hoare_fd_pwrite(fd, "H", 1, 0), 1);
    CHECK_EQ(hoare_fd_pread(fd, buf, 5, 0), 5);
    CHECK(memcmp(buf, "Hello", 5) == 0);
    CHECK_EQ(hoare_fd_close(fd), 0);
    unlink(tmp);
    /* pipes and sockets have no offsets, whatever their deadlines */
    int pfd[2], sv[2];
    REQUIRE(pipe(pfd) == 0);
    CHECK_EQ(hoare_fd_pread(pfd[0], buf, 1, 0), -ESPIPE);
    CHECK_EQ(hoare_fd_set_deadline(pfd[0], hoare_now() - 1), 0);
    CHECK_EQ(hoare_fd_set_deadline(pfd[1], hoare_now() - 1), 0);
    CHECK_EQ(hoare_fd_pread(pfd[0], buf, 1, 0), -ESPIPE);
    CHECK_EQ(hoare_fd_pwrite(pfd[1], "z", 1, 0), -ESPIPE);
    hoare_fd_close(pfd[0]);
    hoare_fd_close(pfd[1]);
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK_EQ(hoare_fd_set_deadline(sv[0], hoare_now() - 1), 0);
    CHECK_EQ(hoare_fd_pread(sv[0], buf, 1, 0), -ESPIPE);
    CHECK_EQ(hoare_fd_pwrite(sv[0], "z", 1, 0), -ESPIPE);
    hoare_fd_close(sv[0]);
    hoare_fd_close(sv[1]);
    *done = true;
}

/* Threads of this process, the kernel's io_uring workers ("iou-wrk-*", "iou-sqp-*") excepted. */
static int runtime_threads(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[300], comm[32] = "";
        snprintf(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(p, "r");
        if (f) {
            if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
            fclose(f);
        }
        n += strncmp(comm, "iou-", 4) != 0;
    }
    closedir(d);
    return n;
}

static struct {
    int fd;
    _Atomic bool stop;
    _Atomic long reads, bad;
    hoare_wg wg;
} load;

/* Reader i owns a region of the file: it drops the region's pages from the cache and reads it back
 * block by block, again and again, so that its reads wait for the disk. */
static void reader(void *p) {
    uint32_t region = (uint32_t)(uintptr_t)p * (FILE_SIZE / 256);
    uint32_t *b = malloc(BLOCK);
    REQUIRE(b != NULL);
    while (!atomic_load(&load.stop)) {
        (void)posix_fadvise(load.fd, region, FILE_SIZE / 256, POSIX_FADV_DONTNEED);
        for (uint32_t off = region; off < region + FILE_SIZE / 256 && !atomic_load(&load.stop); off += BLOCK) {
            ssize_t n = hoare_fd_pread(load.fd, b, BLOCK, off);
            if (n != BLOCK || !block_ok(b, off, BLOCK)) atomic_fetch_add(&load.bad, 1);
            atomic_fetch_add(&load.reads, 1);
        }
    }
    free(b);
    hoare_wg_done(&load.wg);
}

/* The goroutine that must keep running while the readers wait: it wakes for each tick of a 10 ms
 * ticker, and at the latest every 20 ms on its own (a select with a timeout), so that `beats` and
 * `max_gap` measure whether the processor is free for it, and `ticks` whether the ticker ticks.
 * (The ticker alone is not enough at this base: its periodic timer can stall for seconds while
 * other goroutines are parked, a scheduler matter that select timeouts and sleeps escape.) */
struct ticks {
    hoare_chan *stop;
    int count, beats, max_threads;
    int64_t last, max_gap;
};
static void ticker(void *p) {
    struct ticks *t = p;
    hoare_ticker *tk = hoare_ticker_start(10 * HOARE_MS);
    for (;;) {
        int64_t v;
        hoare_case cs[2] = {HOARE_RECV(hoare_ticker_chan(tk), &v), HOARE_RECV(t->stop, NULL)};
        int i = hoare_select_timeout(cs, 2, 20 * HOARE_MS);
        if (i == 1) break;
        if (i == 0) t->count++;
        t->beats++;
        int64_t now = hoare_now();
        if (t->last && now - t->last > t->max_gap) t->max_gap = now - t->last;
        t->last = now;
        int th = runtime_threads();
        if (th > t->max_threads) t->max_threads = th;
    }
    hoare_ticker_stop(tk);
}

/* 256 goroutines read random blocks of the (cold) file for a while, on one processor. */
static void test_many_readers(void) {
    enum { READERS = 256 };
    int old = hoare_procs(1);
    load.fd = open(path, O_RDONLY | O_CLOEXEC);
    REQUIRE(load.fd >= 0);
    atomic_store(&load.stop, false);
    struct ticks t = {.stop = hoare_chan_make(0, 0), .last = hoare_now()};
    REQUIRE(hoare_go(ticker, &t) == 0);
    for (int i = 0; i < READERS; i++) {
        hoare_wg_add(&load.wg, 1);
        REQUIRE(hoare_go(reader, (void *)(intptr_t)i) == 0);
    }
    hoare_sleep(1500 * HOARE_MS);
    atomic_store(&load.stop, true);
    hoare_wg_wait(&load.wg);
    hoare_close(t.stop);
    test_wait_count(0);
    hoare_chan_release(t.stop);
    hoare_fd_close(load.fd);
    printf("file reads (%s): %ld blocks by %d goroutines on 1 processor in 1.5 s; %d beats, %d ticks "
           "(longest gap %lld ms); at most %d threads\n", hoare_file_io(), atomic_load(&load.reads), READERS,
           t.beats, t.count, (long long)(t.max_gap / HOARE_MS), t.max_threads);
    CHECK_EQ(atomic_load(&load.bad), 0);
    CHECK(atomic_load(&load.reads) > READERS);
    /* The ticker goroutine shares the processor with 256 readers that are busy between their
     * waits: it runs now and then (a processor blocked in the reads would give it nothing). No
     * bound on its longest wait: at this base, expired timers wait while goroutines hand the
     * processor straight to each other, by hundreds of ms on a loaded machine. */
    CHECK(t.beats >= 2);
    CHECK(t.count >= 1);
    if (strcmp(hoare_file_io(), "io_uring") == 0)
        CHECK(t.max_threads > 0 && t.max_threads <= 6); /* main, monitor, one or two Ms */
    hoare_procs(old);
}

/* Cold reads from goroutines spread over four processors: each processor submits to a ring of its
 * own (uring.c), and every ring's completions reach their goroutines, with the right bytes (a
 * poller that reaped one ring only would leave the others' readers parked until the watchdog). */
static void region_reader(void *p) {
    enum { ROUNDS = 3 };
    uint32_t region = (uint32_t)(uintptr_t)p * (FILE_SIZE / 64);
    uint32_t *b = malloc(BLOCK);
    REQUIRE(b != NULL);
    for (int round = 0; round < ROUNDS; round++) {
        (void)posix_fadvise(load.fd, region, FILE_SIZE / 64, POSIX_FADV_DONTNEED);
        for (uint32_t off = region; off < region + FILE_SIZE / 64; off += 16 * BLOCK) {
            ssize_t n = hoare_fd_pread(load.fd, b, BLOCK, off);
            if (n != BLOCK || !block_ok(b, off, BLOCK)) atomic_fetch_add(&load.bad, 1);
            atomic_fetch_add(&load.reads, 1);
        }
    }
    free(b);
    hoare_wg_done(&load.wg);
}

static void test_readers_on_many_processors(void) {
    enum { READERS = 64 };
    int old = hoare_procs(4);
    load.fd = open(path, O_RDONLY | O_CLOEXEC);
    REQUIRE(load.fd >= 0);
    atomic_store(&load.reads, 0);
    atomic_store(&load.bad, 0);
    for (int i = 0; i < READERS; i++) {
        hoare_wg_add(&load.wg, 1);
        REQUIRE(hoare_go(region_reader, (void *)(intptr_t)i) == 0);
    }
    hoare_wg_wait(&load.wg);
    hoare_fd_close(load.fd);
    printf("file reads on 4 processors (%s): %ld blocks, rings made: %d\n", hoare_file_io(),
           atomic_load(&load.reads), (int)hoare__uring_rings());
    CHECK_EQ(atomic_load(&load.bad), 0);
    CHECK_EQ(atomic_load(&load.reads), (long)READERS * 3 * (FILE_SIZE / 64 / (16 * BLOCK)));
    if (strcmp(hoare_file_io(), "io_uring") == 0) CHECK(hoare__uring_rings() >= 1);
    hoare_procs(old);
}

/* A plain thread reading a file blocks itself, and gets the same bytes. */
static void test_plain_thread(void) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    uint32_t b[BLOCK / 4];
    CHECK_EQ(hoare_fd_pread(fd, b, BLOCK, 8 * BLOCK), BLOCK);
    CHECK(block_ok(b, 8 * BLOCK, BLOCK));
    CHECK_EQ(hoare_fd_read(fd, b, 64), 64);
    CHECK(block_ok(b, 0, 64));
    hoare_fd_close(fd);
}

static void run_basics_in_goroutine(void) {
    bool done = false;
    REQUIRE(hoare_go(basics, &done) == 0);
    test_wait_count(0);
    CHECK(done);
}

int main(int argc, char **argv) {
    test_begin(argv, 120);
    if (argc > 1 && strcmp(argv[1], "blocking") == 0) {
        /* HOARE_IO_URING=0: the blocking region, same results */
        snprintf(path, sizeof path, "%s", getenv("TEST_FILE"));
        CHECK(strcmp(hoare_file_io(), "blocking") == 0);
        run_basics_in_goroutine();
        test_plain_thread();
        return test_checks_failed ? 1 : 0;
    }
    make_file();
    printf("regular files: %s\n", hoare_file_io());
    run_basics_in_goroutine();
    test_plain_thread();
    test_many_readers();
    test_readers_on_many_processors();
    char env_file[96], out[2048];
    snprintf(env_file, sizeof env_file, "TEST_FILE=%s", path);
    char *env[] = {"HOARE_IO_URING=0", env_file, NULL};
    int st = test_run_self("blocking", env, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "blocking child: %s\n", out);
    unlink(path);
    TEST_MAIN_END();
}
