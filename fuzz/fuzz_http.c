/*
 * fuzz_http.c - libFuzzer target: the request parser of examples/http_hello.c (http_parse.h).
 *
 * Besides memory errors (ASan, UBSan), it checks properties any correct parser has:
 *   - PARSE_OK: the head it measured lies within the input and ends with a blank line (LF LF or
 *     LF CR LF), and parsing exactly that head gives the same request (what follows the head does
 *     not change it);
 *   - a strict prefix of a complete head is never PARSE_OK (the head cannot end earlier), and
 *     parsing is a pure function (same input, same answer);
 *   - GET and HEAD are exclusive, and HTTP/1.0 is keep-alive only when asked to be.
 */
#include "http_parse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static void fail(const char *what) {
    fprintf(stderr, "fuzz_http oracle: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a copy of exactly size bytes, so that ASan sees any read past the end */
    char *p = malloc(size ? size : 1);
    if (!p) return 0;
    memcpy(p, data, size);
    struct request rq, again;
    enum parse_result r = parse_request(p, size, &rq);
    if (parse_request(p, size, &again) != r || memcmp(&rq, &again, sizeof rq) != 0)
        fail("two parses of one input differ");
    if (r == PARSE_OK) {
        size_t h = rq.header_len;
        if (h == 0 || h > size) fail("header length outside the input");
        if (!(h >= 2 && p[h - 1] == '\n' && (p[h - 2] == '\n' || (h >= 3 && p[h - 2] == '\r' && p[h - 3] == '\n'))))
            fail("head does not end with a blank line");
        struct request head;
        if (parse_request(p, h, &head) != PARSE_OK || memcmp(&rq, &head, sizeof rq) != 0)
            fail("the head alone parses differently");
        for (size_t k = h > 64 ? h - 64 : 0; k < h; k++)
            if (parse_request(p, k, &head) == PARSE_OK) fail("a strict prefix of the head is a whole request");
        if (rq.is_get && rq.is_head) fail("GET and HEAD at once");
    }
    if (r == PARSE_OK && !rq.http11 && rq.keep_alive) {
        /* HTTP/1.0 keep-alive needs the header: it must be in the head */
        int found = 0;
        for (size_t k = 0; k + 10 <= rq.header_len; k++)
            if (strncasecmp(p + k, "keep-alive", 10) == 0) found = 1;
        if (!found) fail("HTTP/1.0 keep-alive without the header");
    }
    free(p);
    return 0;
}
