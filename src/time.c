/*
 * time.c - channels that time delivers to: hoare_after, tickers (Go's time.Ticker) and one-shot
 * timers (time.Timer), built on runtime timers (timer.c) and channels (chan.c).
 *
 * Each owns a runtime timer whose callback try-sends hoare_now() on a capacity-1 channel of
 * int64_t: a value nobody has taken yet makes the next tick drop (Go's ticker behaviour).
 *
 * Ownership: hoare_after's channel belongs to the caller; the timer record is tied to the channel
 * (chan on-free hook), so releasing the channel - before or after it fired - stops the timer and
 * frees the record: the hook's hoare__timer_stop waits out a callback that is running. Tickers and
 * timers hold one reference to their channel; stop/free drops it.
 */
#include "chan.h"
#include "runtime.h"

#include <errno.h>
#include <stdlib.h>

struct hoare_ticker {
    hoare_rtimer timer;
    hoare_chan *c;
};

struct hoare_timer {
    hoare_rtimer timer;
    hoare_chan *c;
};

/* Timer callback: deliver the time if the channel has room, else drop it. */
static void deliver_now(void *arg, int64_t now) {
    hoare_chan *c = *(hoare_chan **)arg; /* arg points at the owner's channel field */
    hoare_trysend(c, &now);
}

/* ---------------------------------------------------------------- hoare_after */

struct after {
    hoare_rtimer timer;
    hoare_chan *c;
};

static void after_channel_freed(void *arg) {
    struct after *a = arg;
    hoare__timer_stop(&a->timer);
    free(a);
}

hoare_chan *hoare_after(int64_t ns) {
    hoare_chan *c = hoare_chan_make(sizeof(int64_t), 1);
    if (!c) return NULL;
    struct after *a = calloc(1, sizeof *a);
    if (!a) {
        hoare_chan_release(c);
        errno = ENOMEM;
        return NULL;
    }
    a->c = c;
    a->timer.fn = deliver_now;
    a->timer.arg = &a->c;
    hoare__chan_on_free(c, after_channel_freed, a);
    hoare__timer_start(&a->timer, hoare__nanotime() + (ns > 0 ? ns : 0));
    return c;
}

/* ---------------------------------------------------------------- tickers */

hoare_ticker *hoare_ticker_start(int64_t period) {
    if (period <= 0) {
        errno = EINVAL;
        return NULL;
    }
    hoare_ticker *t = calloc(1, sizeof *t);
    if (!t || !(t->c = hoare_chan_make(sizeof(int64_t), 1))) {
        free(t);
        errno = ENOMEM;
        return NULL;
    }
    t->timer.fn = deliver_now;
    t->timer.arg = &t->c;
    t->timer.period = period;
    hoare__timer_start(&t->timer, hoare__nanotime() + period);
    return t;
}

hoare_chan *hoare_ticker_chan(hoare_ticker *t) { return t ? t->c : NULL; }

void hoare_ticker_reset(hoare_ticker *t, int64_t period) {
    if (!t || period <= 0) return;
    hoare__timer_stop(&t->timer);
    t->timer.period = period;
    hoare__timer_start(&t->timer, hoare__nanotime() + period);
}

void hoare_ticker_stop(hoare_ticker *t) {
    if (!t) return;
    hoare__timer_stop(&t->timer);
    hoare_chan_release(t->c);
    free(t);
}

/* ---------------------------------------------------------------- one-shot timers */

hoare_timer *hoare_timer_start(int64_t ns) {
    hoare_timer *t = calloc(1, sizeof *t);
    if (!t || !(t->c = hoare_chan_make(sizeof(int64_t), 1))) {
        free(t);
        errno = ENOMEM;
        return NULL;
    }
    t->timer.fn = deliver_now;
    t->timer.arg = &t->c;
    hoare__timer_start(&t->timer, hoare__nanotime() + (ns > 0 ? ns : 0));
    return t;
}

hoare_chan *hoare_timer_chan(hoare_timer *t) { return t ? t->c : NULL; }

/* Stop, and discard a fired value nobody took (Go 1.23: no stale value after Stop or Reset). */
static int stop_and_drain(hoare_timer *t) {
    bool was_pending = hoare__timer_stop(&t->timer);
    hoare_tryrecv(t->c, NULL);
    return was_pending ? 1 : 0;
}

int hoare_timer_stop(hoare_timer *t) { return t ? stop_and_drain(t) : 0; }

int hoare_timer_reset(hoare_timer *t, int64_t ns) {
    if (!t) return 0;
    int was_pending = stop_and_drain(t);
    hoare__timer_start(&t->timer, hoare__nanotime() + (ns > 0 ? ns : 0));
    return was_pending;
}

void hoare_timer_free(hoare_timer *t) {
    if (!t) return;
    hoare__timer_stop(&t->timer);
    hoare_chan_release(t->c);
    free(t);
}
