/*
 * trace.h - execution trace hooks (trace.c). Internal.
 *
 * The scheduler calls these at the points a trace records: a goroutine starts or stops running on
 * a thread, is created, blocks, is unblocked, exits, is preempted; a thread takes or gives up a
 * processor, steals, enters or leaves a blocking region; the monitor hands a processor off.
 * Each hook is one predictable branch on a global flag word (observe.h) while tracing is off (the
 * flag is read relaxed: a hook racing with hoare_trace_start/stop may record or drop one event,
 * harmless). Building with HOARE_NO_TRACE_HOOKS compiles every hook out, statistics' included
 * (bench/trace_overhead.sh compares).
 */
#ifndef HOARE_TRACE_H
#define HOARE_TRACE_H

#include "proc.h"

/* the recorders run only while tracing: kept out of the hot paths' layout */
#define COLD __attribute__((cold))

static inline bool trace_on(void) { return unlikely(observing() & OBSERVE_TRACE); }

/* The sites that feed both traces and statistics test the flag word once (observe.h). */
HIDDEN COLD void hoare__observe_go_start(M *m, G *g);
HIDDEN COLD void hoare__observe_go_stop(M *m);
HIDDEN COLD void hoare__observe_go_ready(M *m, G *g);
HIDDEN COLD void hoare__observe_go_create(M *m, G *g);
/* g starts running on m. Closes the thread's previous slice, if any, and records why that
 * goroutine stopped, from m's pending action: a park (trace: block with its wait reason;
 * statistics: the park by reason) or a preemption. So a hand-off tests the flag word twice (the
 * ready and the start), not once per event. */
static inline void observe_go_start(M *m, G *g) { if (unlikely(observing())) hoare__observe_go_start(m, g); }
/* m goes back to its scheduler context: its goroutine's slice ends (and why, as above). */
static inline void observe_go_stop(M *m) { if (unlikely(observing())) hoare__observe_go_stop(m); }
/* g was made runnable by the caller (m NULL on a plain thread): trace_go_unblock and stats_ready. */
static inline void observe_go_ready(M *m, G *g) { if (unlikely(observing())) hoare__observe_go_ready(m, g); }
/* g was created: trace_go_create and stats_create. */
static inline void observe_go_create(M *m, G *g) { if (unlikely(observing())) hoare__observe_go_create(m, g); }

/* out-of-line recorders (trace.c) */
HIDDEN COLD void hoare__trace_go_create(G *g);
HIDDEN COLD void hoare__trace_go_unblock(G *g);
HIDDEN COLD void hoare__trace_go_exit(G *g);
HIDDEN COLD void hoare__trace_proc(P *p, bool start);
HIDDEN COLD void hoare__trace_steal(P *victim, G *g);
HIDDEN COLD void hoare__trace_blocking(G *g, bool begin);
HIDDEN COLD void hoare__trace_handoff(P *p);
/* HOARE_TRACE=<file>: start tracing the whole run (called once at runtime start). */
HIDDEN void hoare__trace_init(void);
/* A fatal exit: finish the trace file if one is being written. */
HIDDEN void hoare__trace_finish(void);

static inline void trace_go_create(G *g) { if (trace_on()) hoare__trace_go_create(g); }
/* g was made runnable by the caller (a flow arrow from here to g's next slice). */
static inline void trace_go_unblock(G *g) { if (trace_on()) hoare__trace_go_unblock(g); }
/* g returns (recorded before it stops counting as alive). */
static inline void trace_go_exit(G *g) { if (trace_on()) hoare__trace_go_exit(g); }
/* The calling thread takes (start) or gives up p. */
static inline void trace_proc(P *p, bool start) { if (trace_on()) hoare__trace_proc(p, start); }
/* The caller stole g (and maybe more) from victim; returns g. */
static inline G *trace_steal(P *victim, G *g) { if (g && trace_on()) hoare__trace_steal(victim, g); return g; }
static inline void trace_blocking(G *g, bool begin) { if (trace_on()) hoare__trace_blocking(g, begin); }
/* The monitor took p from a thread stuck in a blocking region. */
static inline void trace_handoff(P *p) { if (trace_on()) hoare__trace_handoff(p); }

#endif /* HOARE_TRACE_H */
