// The public header is usable from C++: this file compiles it as C++ and makes a few calls.
#include <hoare.h>
#include <cstdio>

static void hello(void *arg) { *static_cast<int *>(arg) = 42; }

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
    std::printf("1 passed, 0 failed\n");
    return v == 42 ? 0 : 1;
}
