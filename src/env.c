/*
 * env.c - the environment variables the runtime reads, each parsed one way.
 *
 * A switch (HOARE_PREEMPT, HOARE_DEADLOCK, HOARE_LEND, HOARE_STACK_GUARD, HOARE_STATS,
 * HOARE_IO_URING) is 0/1, false/true, off/on or no/yes; a number (HOARE_PROCS) is the whole string
 * in decimal; a size (HOARE_STACK_SIZE) is a number with an optional k, m or g suffix (KiB, MiB,
 * GiB). Unset or empty means the default. A value that is none of these, or out of range, is
 * reported on stderr and the default applies: a typo must not silently change how the
 * program runs (Go ignores a malformed GOMAXPROCS, silently).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "runtime.h"

static void report(const char *name, const char *value, const char *expected) {
    fprintf(stderr, "hoare: %s=%s: expected %s; using the default\n", name, value, expected);
}

bool hoare__env_switch(const char *name, bool dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    static const char *const off[] = {"0", "false", "off", "no"}, *const on[] = {"1", "true", "on", "yes"};
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
        if (!strcasecmp(v, off[i])) return false;
        if (!strcasecmp(v, on[i])) return true;
    }
    report(name, v, "0 or 1");
    return dflt;
}

/* The value's number and suffix shift (0, or 10/20/30 when suffixes are allowed); false when it is
 * not one. */
static bool parse_number(const char *v, bool suffixes, unsigned long long *n, int *shift) {
    if (*v < '0' || *v > '9') return false; /* no sign, no space */
    char *end;
    errno = 0;
    *n = strtoull(v, &end, 10);
    if (errno) return false;
    *shift = 0;
    if (suffixes && *end) {
        switch (*end++) {
        case 'k': case 'K': *shift = 10; break;
        case 'm': case 'M': *shift = 20; break;
        case 'g': case 'G': *shift = 30; break;
        default: return false;
        }
    }
    return *end == '\0';
}

bool hoare__env_long(const char *name, long min, long max, long *out) {
    const char *v = getenv(name);
    if (!v || !*v) return false;
    unsigned long long n;
    int shift;
    if (!parse_number(v, false, &n, &shift) || n < (unsigned long long)min || n > (unsigned long long)max) {
        char expected[64];
        snprintf(expected, sizeof expected, "a number from %ld to %ld", min, max);
        report(name, v, expected);
        return false;
    }
    *out = (long)n;
    return true;
}

bool hoare__env_size(const char *name, size_t min, size_t max, size_t *out) {
    const char *v = getenv(name);
    if (!v || !*v) return false;
    unsigned long long n;
    int shift;
    if (!parse_number(v, true, &n, &shift) || n > max >> shift || (n << shift) < min) {
        char expected[96];
        snprintf(expected, sizeof expected, "a size from %zu KiB to %zu MiB (k, m, g suffixes)", min >> 10, max >> 20);
        report(name, v, expected);
        return false;
    }
    *out = (size_t)(n << shift);
    return true;
}
