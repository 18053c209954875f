/*
 * traceback.h - stack traces in Go's layout for dumps, fatal errors and crash reports
 * (traceback.c). Internal.
 *
 * A frame prints as Go prints it: the function, then a tab, file:line and the offset in the
 * function ("\t/src/x.c:12 +0x1f"); without debug information the module and the offset in it
 * ("\t/usr/bin/prog+0x1234"). Inlined calls are frames of their own, as in Go.
 *
 * Nothing here runs on a hot path: goroutines keep raw addresses (creator_pc, start_pc) and their
 * saved stack pointer; these functions unwind and symbolise only when asked to print.
 */
#ifndef HOARE_TRACEBACK_H
#define HOARE_TRACEBACK_H

#include "runtime.h"

/* The frames of a goroutine that is switched out (parked, runnable, preempted), unwound from its
 * saved context. */
HIDDEN void hoare__traceback_g(int fd, G *g);
/* The frames of the calling thread, from the frame of the function whose return address (in its
 * caller) is from_pc: pass __builtin_return_address(0) to start at the caller. */
HIDDEN void hoare__traceback_here(int fd, uintptr_t from_pc);
/* The frames of the code a signal interrupted (uctx: the handler's third argument). */
HIDDEN void hoare__traceback_signal(int fd, void *uctx);
/* dprintf without its stdio buffer (no malloc: these print from signal handlers); lines are cut
 * at 1 KiB. */
HIDDEN __attribute__((format(printf, 2, 3))) void hoare__fdprintf(int fd, const char *fmt, ...);
/* "created by FUNC in goroutine N" and its file:line. */
HIDDEN void hoare__traceback_creator(int fd, const G *g);

#endif /* HOARE_TRACEBACK_H */
