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

/* A runtime timer and the channel it delivers to: hoare_after's record, tickers and one-shot
 * timers are all this (a ticker's timer has a period). */
struct timed_chan {
    hoare_rtimer timer;
    hoare_chan *c;
    /* Serialises the owner's stop and reset (Go allows them from several goroutines at once):
     * each is a runtime stop then start, and two starts of one timer would collide. Never held
     * by the timer's callback. */
    hoare_lock lock;
    /* TC_LIVE while a ticker or timer is usable, cleared when freed: a stop, reset or free after
     * the free finds it cleared (best-effort: the word lies beyond what an allocator reuses in a
     * freed block; ASan reports the use after free itself). */
    uint32_t live;
};
#define TC_LIVE 0x7173e5a1u

static struct timed_chan *live_tc(struct timed_chan *tc, const char *fn) {
    if (unlikely(tc->live != TC_LIVE))
        hoare__fatal("%s: %p was already freed (stopped or freed twice?)", fn, (void *)tc);
    return tc;
}
struct hoare_ticker {
    struct timed_chan tc;
};
struct hoare_timer {
    struct timed_chan tc;
};

/* Timer callback: deliver the time if the channel has room, else drop it. */
static void deliver_now(void *arg, int64_t now) {
    hoare_chan *c = *(hoare_chan **)arg; /* arg points at the owner's channel field */
    hoare_trysend(c, &now);
}

/* ---------------------------------------------------------------- hoare_after */

/* hoare_after's record holds no reference to its channel: the channel's free hook frees it. */
static void after_channel_freed(void *arg) {
    struct timed_chan *a = arg;
    hoare__timer_stop(&a->timer);
    free(a);
}

hoare_chan *hoare_after(int64_t ns) {
    hoare_chan *c = hoare_chan_make(sizeof(int64_t), 1);
    if (!c) return NULL;
    struct timed_chan *a = hoare__calloc(1, sizeof *a);
    if (!a) {
        hoare_chan_release(c);
        errno = ENOMEM;
        return NULL;
    }
    a->c = c;
    a->timer.fn = deliver_now;
    a->timer.arg = &a->c;
    hoare__chan_on_free(c, after_channel_freed, a);
    hoare__timer_start(&a->timer, hoare__deadline_in(ns));
    return c;
}

/* ---------------------------------------------------------------- tickers and timers */

/* A started timed channel: first delivery `first` ns from now, then every `period` if > 0. */
static struct timed_chan *timed_chan_start(int64_t first, int64_t period) {
    struct timed_chan *tc = hoare__calloc(1, sizeof *tc);
    if (!tc || !(tc->c = hoare_chan_make(sizeof(int64_t), 1))) {
        free(tc);
        errno = ENOMEM;
        return NULL;
    }
    tc->timer.fn = deliver_now;
    tc->timer.arg = &tc->c;
    tc->timer.period = period;
    tc->live = TC_LIVE;
    hoare__timer_start(&tc->timer, hoare__deadline_in(first));
    return tc;
}

static void timed_chan_free(struct timed_chan *tc) {
    tc->live = 0;
    hoare__timer_stop(&tc->timer);
    hoare_chan_release(tc->c);
    free(tc);
}

hoare_ticker *hoare_ticker_start(int64_t period) {
    if (period <= 0) {
        errno = EINVAL;
        return NULL;
    }
    return (hoare_ticker *)timed_chan_start(period, period);
}

hoare_chan *hoare_ticker_chan(hoare_ticker *t) { return t ? t->tc.c : NULL; }

int hoare_ticker_reset(hoare_ticker *t, int64_t period) {
    if (!t || period <= 0) return EINVAL;
    struct timed_chan *tc = live_tc(&t->tc, "hoare_ticker_reset");
    hoare__lock(&tc->lock);
    hoare__timer_stop(&tc->timer);
    hoare_tryrecv(tc->c, NULL); /* no stale tick after the reset (Go 1.23) */
    tc->timer.period = period;
    hoare__timer_start(&tc->timer, hoare__deadline_in(period));
    hoare__unlock(&tc->lock);
    return 0;
}

void hoare_ticker_stop(hoare_ticker *t) {
    if (t) timed_chan_free(live_tc(&t->tc, "hoare_ticker_stop"));
}

hoare_timer *hoare_timer_start(int64_t ns) { return (hoare_timer *)timed_chan_start(ns, 0); }

hoare_chan *hoare_timer_chan(hoare_timer *t) { return t ? t->tc.c : NULL; }

/* Stop, and discard a fired value nobody took (Go 1.23: no stale value after Stop or Reset); then
 * re-arm for `when` unless it is 0. Returns 1 if the timer was pending. */
static int stop_drain_rearm(struct timed_chan *tc, int64_t when) {
    hoare__lock(&tc->lock);
    bool was_pending = hoare__timer_stop(&tc->timer);
    hoare_tryrecv(tc->c, NULL);
    if (when) hoare__timer_start(&tc->timer, when);
    hoare__unlock(&tc->lock);
    return was_pending ? 1 : 0;
}

int hoare_timer_stop(hoare_timer *t) {
    return t ? stop_drain_rearm(live_tc(&t->tc, "hoare_timer_stop"), 0) : 0;
}

int hoare_timer_reset(hoare_timer *t, int64_t ns) {
    if (!t) return 0;
    return stop_drain_rearm(live_tc(&t->tc, "hoare_timer_reset"), hoare__deadline_in(ns));
}

void hoare_timer_free(hoare_timer *t) {
    if (t) timed_chan_free(live_tc(&t->tc, "hoare_timer_free"));
}
