/*
 * test_pool.c - hoare_pool (Go's sync.Pool): objects put come back from get (and new_object fills
 * in when it is empty); concurrent get/put never hands one object to two holders; shedding hands
 * objects left unused for two intervals to free_object, and free_object sees nothing else (not an
 * object in use, not one twice); destroy hands over the rest. A pool without free_object keeps
 * every object; a pool first used while the runtime idles sheds too.
 */
#include "test.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

/* Objects: indexes into a table of states, so that every hand-over can be checked. */
enum { NOBJ = 4096 };
enum { IN_POOL = 1, HELD = 2, FREED = 3 };
static _Atomic int state[NOBJ];
static _Atomic long freed_count, bad_free, news;

static void *obj_of(int i) { return (void *)(uintptr_t)(i + 1); }
static int index_of(void *obj) { return (int)((uintptr_t)obj - 1); }

static void free_obj(void *obj, void *arg) {
    (void)arg;
    int i = index_of(obj);
    int expect = IN_POOL;
    if (i < 0 || i >= NOBJ || !atomic_compare_exchange_strong(&state[i], &expect, FREED))
        atomic_fetch_add(&bad_free, 1);
    atomic_fetch_add(&freed_count, 1);
}

static void *new_obj(void *arg) {
    (void)arg;
    atomic_fetch_add(&news, 1);
    return NULL; /* "nothing": lets the tests see that get found the pool empty */
}

static hoare_wg wg;

/* ---- get after put */

static hoare_pool basic = {.free_object = free_obj};

static void basic_body(void *arg) {
    (void)arg;
    for (int i = 0; i < 100; i++) {
        atomic_store(&state[i], IN_POOL);
        CHECK_EQ(hoare_pool_put(&basic, obj_of(i)), 0);
    }
    int seen[100] = {0};
    for (int k = 0; k < 100; k++) {
        void *o = hoare_pool_get(&basic);
        CHECK(o != NULL);
        if (!o) break;
        int i = index_of(o);
        CHECK(i >= 0 && i < 100);
        if (i >= 0 && i < 100) {
            seen[i]++;
            atomic_store(&state[i], HELD);
        }
    }
    for (int i = 0; i < 100; i++) CHECK_EQ(seen[i], 1);
    hoare_wg_done(&wg);
}

static void test_get_after_put(void) {
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(basic_body, NULL) == 0);
    hoare_wg_wait(&wg);
    /* empty now: get falls back to new_object */
    hoare_pool empty = {.new_object = new_obj};
    CHECK(hoare_pool_get(&empty) == NULL);
    CHECK_EQ(atomic_load(&news), 1);
    CHECK_EQ(hoare_pool_put(&empty, NULL), EINVAL);
    CHECK_EQ(hoare_pool_put(NULL, obj_of(0)), EINVAL);
    /* from a plain thread too (the shared arrays) */
    atomic_store(&state[200], IN_POOL);
    CHECK_EQ(hoare_pool_put(&basic, obj_of(200)), 0);
    void *o = hoare_pool_get(&basic);
    CHECK(o == obj_of(200));
    if (o) atomic_store(&state[200], HELD);
    hoare_pool_destroy(&basic); /* nothing left in it */
    CHECK_EQ(atomic_load(&freed_count), 0);
    CHECK_EQ(atomic_load(&bad_free), 0);
}

/* ---- concurrent get/put */

static hoare_pool busy = {.free_object = free_obj};
static _Atomic long double_handout;

static void stress_body(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    void *mine[8];
    int n = 0;
    for (int k = 0; k < 20000; k++) {
        seed = seed * 1103515245u + 12345u;
        if (n < 8 && (seed >> 16) % 2) {
            void *o = hoare_pool_get(&busy);
            if (o) {
                int expect = IN_POOL;
                if (!atomic_compare_exchange_strong(&state[index_of(o)], &expect, HELD))
                    atomic_fetch_add(&double_handout, 1);
                mine[n++] = o;
            }
        } else if (n > 0) {
            void *o = mine[--n];
            atomic_store(&state[index_of(o)], IN_POOL);
            if (hoare_pool_put(&busy, o) != 0) atomic_fetch_add(&double_handout, 1);
        }
        if (k % 1000 == 0) hoare_yield();
    }
    while (n > 0) {
        void *o = mine[--n];
        atomic_store(&state[index_of(o)], IN_POOL);
        hoare_pool_put(&busy, o);
    }
    hoare_wg_done(&wg);
}

static void test_concurrent(void) {
    int workers = (int)TEST_SCALE(64L);
    for (int i = 0; i < 1000; i++) {
        atomic_store(&state[i], IN_POOL);
        REQUIRE(hoare_pool_put(&busy, obj_of(i)) == 0);
    }
    hoare_wg_add(&wg, workers);
    for (int i = 0; i < workers; i++) REQUIRE(hoare_go(stress_body, (void *)(uintptr_t)(i + 1)) == 0);
    hoare_wg_wait(&wg);
    CHECK_EQ(atomic_load(&double_handout), 0);
    /* every object is back: destroy hands each to free_object exactly once */
    long before = atomic_load(&freed_count);
    hoare_pool_destroy(&busy);
    CHECK_EQ(atomic_load(&freed_count) - before, 1000);
    CHECK_EQ(atomic_load(&bad_free), 0);
    for (int i = 0; i < 1000; i++) CHECK_EQ(atomic_load(&state[i]), FREED);
}

/* ---- shedding */

static hoare_pool shed = {.free_object = free_obj};

static void shed_put(void *arg) {
    (void)arg;
    /* 1000..1499 go to the pool; 1500..1509 are taken and kept */
    for (int i = 1000; i < 1510; i++) {
        atomic_store(&state[i], IN_POOL);
        CHECK_EQ(hoare_pool_put(&shed, obj_of(i)), 0);
    }
    for (int k = 0; k < 10; k++) {
        void *o = hoare_pool_get(&shed);
        CHECK(o != NULL);
        if (o) atomic_store(&state[index_of(o)], HELD);
    }
    hoare_wg_done(&wg);
}

/* Without free_object nothing is shed: these stay through test_shedding's two intervals (they
 * were once aged out and dropped, neither returned nor freed). */
static hoare_pool keep;
enum { NKEEP = 8 };
static int kept[NKEEP];

static void keep_put(void *arg) {
    (void)arg;
    for (int i = 0; i < NKEEP / 2; i++) CHECK_EQ(hoare_pool_put(&keep, &kept[i]), 0);
    hoare_wg_done(&wg);
}

/* one processor here: keep_get runs where keep_put did, and finds its local cache */
static void keep_get(void *arg) {
    (void)arg;
    int back[NKEEP] = {0};
    for (int k = 0; k < NKEEP; k++) {
        int *o = hoare_pool_get(&keep);
        CHECK(o >= kept && o < kept + NKEEP);
        if (o >= kept && o < kept + NKEEP) back[o - kept]++;
    }
    for (int i = 0; i < NKEEP; i++) CHECK_EQ(back[i], 1);
    CHECK(hoare_pool_get(&keep) == NULL);
    hoare_wg_done(&wg);
}

static void test_shedding(void) {
    int procs = hoare_procs(1);
    long before = atomic_load(&freed_count);
    hoare_wg_add(&wg, 2);
    REQUIRE(hoare_go(shed_put, NULL) == 0);
    REQUIRE(hoare_go(keep_put, NULL) == 0);
    for (int i = NKEEP / 2; i < NKEEP; i++) CHECK_EQ(hoare_pool_put(&keep, &kept[i]), 0); /* shared arrays */
    hoare_wg_wait(&wg);
    /* two intervals of about a second each, and the monitor's rounds: wait up to 20 s */
    int64_t deadline = hoare_now() + 20 * HOARE_SEC;
    while (atomic_load(&freed_count) - before < 500 && hoare_now() < deadline) hoare_sleep(10 * HOARE_MS);
    CHECK_EQ(atomic_load(&freed_count) - before, 500);
    CHECK_EQ(atomic_load(&bad_free), 0);
    int held = 0, freed = 0;
    for (int i = 1000; i < 1510; i++) {
        held += atomic_load(&state[i]) == HELD;
        freed += atomic_load(&state[i]) == FREED;
    }
    CHECK_EQ(held, 10);
    CHECK_EQ(freed, 500);
    /* the held ones come back; destroy frees those and nothing else */
    for (int i = 1000; i < 1510; i++)
        if (atomic_load(&state[i]) == HELD) {
            atomic_store(&state[i], IN_POOL);
            CHECK_EQ(hoare_pool_put(&shed, obj_of(i)), 0);
        }
    hoare_pool_destroy(&shed);
    CHECK_EQ(atomic_load(&freed_count) - before, 510);
    CHECK_EQ(atomic_load(&bad_free), 0);

    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(keep_get, NULL) == 0);
    hoare_wg_wait(&wg);
    hoare_pool_destroy(&keep);
    hoare_procs(procs);
}

/* ---- a pool first used from a plain thread while nothing runs: the sleeping monitor learns of it
 * (it once slept on, and the objects stayed until destroy) */

static void nothing(void *arg) { hoare_wg_done(arg); }

static int child_idle_registration(void) {
    hoare_wg started = HOARE_WG_INIT;
    hoare_wg_add(&started, 1);
    if (hoare_go(nothing, &started) != 0) return 1;
    hoare_wg_wait(&started);
    struct timespec idle = {0, 300 * 1000 * 1000}; /* the monitor goes to its long sleep */
    nanosleep(&idle, NULL);
    static hoare_pool idle_pool = {.free_object = free_obj};
    for (int i = 2000; i < 2004; i++) {
        atomic_store(&state[i], IN_POOL);
        if (hoare_pool_put(&idle_pool, obj_of(i)) != 0) return 1;
    }
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int k = 0; k < 2000 && atomic_load(&freed_count) < 4; k++) nanosleep(&tick, NULL);
    fprintf(stderr, "freed=%ld bad=%ld\n", atomic_load(&freed_count), atomic_load(&bad_free));
    return atomic_load(&freed_count) == 4 && atomic_load(&bad_free) == 0 ? 0 : 1;
}

static void test_idle_registration(void) {
    char out[256];
    int status = test_run_self("idle", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(strstr(out, "freed=4 bad=0") != NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "idle") == 0) return child_idle_registration();
    test_begin(argv, 120);
    test_get_after_put();
    test_concurrent();
    test_shedding();
    test_idle_registration();
    TEST_MAIN_END();
}
