// The public header is usable from C++: this file compiles it as C++11 with -Wall -Wextra
// -Wpedantic -Werror (tests/CMakeLists.txt), every *_INIT macro included, and makes a few calls.
#include <hoare.h>
#include <cstdio>

static void hello(void *arg) { *static_cast<int *>(arg) = 42; }

static hoare_mutex mu = HOARE_MUTEX_INIT;
static hoare_rwmutex rw = HOARE_RWMUTEX_INIT;
static hoare_once once = HOARE_ONCE_INIT;
static hoare_cond cond = HOARE_COND_INIT;
static hoare_pool pool = HOARE_POOL_INIT;
static int once_runs;
static void count_once(void *) { once_runs++; }

int main() {
    int v = 0;
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    struct Ctx { int *v; hoare_wg *wg; } c{&v, &wg};
    if (hoare_go([](void *a) { auto *x = static_cast<Ctx *>(a); hello(x->v); hoare_wg_done(x->wg); }, &c) != 0)
        return 1;
    hoare_wg_wait(&wg);
    hoare_chan *ch = hoare_chan_make(sizeof(int), 1);
    int in = 7, out = 0;
    hoare_case cs[] = {HOARE_SEND(ch, &in)};
    if (hoare_select(cs, 1) != 0 || hoare_recv(ch, &out) != 0 || out != 7) return 1;
    hoare_chan_release(ch);
    hoare_mutex_lock(&mu);
    hoare_cond_signal(&cond);
    hoare_mutex_unlock(&mu);
    hoare_rwmutex_rlock(&rw);
    hoare_rwmutex_runlock(&rw);
    hoare_once_do(&once, count_once, nullptr);
    int obj;
    if (hoare_pool_put(&pool, &obj) != 0 || hoare_pool_get(&pool) != &obj || once_runs != 1) return 1;
    hoare_pool_destroy(&pool);
    std::printf("1 passed, 0 failed\n");
    return v == 42 ? 0 : 1;
}
