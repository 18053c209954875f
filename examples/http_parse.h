/*
 * http_parse.h - the HTTP/1.x request parser of http_hello.c, in a header of its own so that the
 * fuzz target (fuzz/fuzz_http.c) runs the very code the server runs. No allocation, no state: it
 * reads n bytes at p and says whether they start with a whole, well-formed request head.
 */
#ifndef HTTP_PARSE_H
#define HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

enum parse_result { PARSE_OK, PARSE_INCOMPLETE, PARSE_BAD, PARSE_UNSUPPORTED };

struct request {
    bool is_get, is_head, http11, keep_alive;
    size_t header_len;     /* bytes of request line and headers, blank line included */
    size_t content_length; /* body bytes that follow */
};

static bool is_tchar(unsigned char c) {
    /* RFC 9110 token characters */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Does the comma-separated list v (length n) contain token tok (case-insensitive)? */
static bool list_has(const char *v, size_t n, const char *tok) {
    size_t tlen = strlen(tok), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t start = i;
        while (i < n && v[i] != ',') i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
        if (end - start == tlen && strncasecmp(v + start, tok, tlen) == 0) return true;
    }
    return false;
}

/* Parse one request at p (n bytes). Lines end in CRLF (a bare LF is accepted, as Go does). */
static enum parse_result parse_request(const char *p, size_t n, struct request *rq) {
    *rq = (struct request){0};
    const char *end = p + n, *line = p;
    const char *nl = memchr(line, '\n', n);
    if (!nl) return PARSE_INCOMPLETE;
    const char *le = nl > line && nl[-1] == '\r' ? nl - 1 : nl;

    /* Request line: method SP target SP HTTP/1.x */
    const char *sp1 = memchr(line, ' ', (size_t)(le - line));
    if (!sp1 || sp1 == line) return PARSE_BAD;
    for (const char *c = line; c < sp1; c++)
        if (!is_tchar((unsigned char)*c)) return PARSE_BAD;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(le - target));
    if (!sp2 || sp2 == target) return PARSE_BAD;
    for (const char *c = target; c < sp2; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) return PARSE_BAD;
    const char *ver = sp2 + 1;
    if (le - ver != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || (ver[7] != '0' && ver[7] != '1'))
        return PARSE_BAD;
    size_t mlen = (size_t)(sp1 - line);
    rq->is_get = mlen == 3 && memcmp(line, "GET", 3) == 0;
    rq->is_head = mlen == 4 && memcmp(line, "HEAD", 4) == 0;
    rq->http11 = ver[7] == '1';

    bool conn_close = false, conn_keep = false, have_host = false, have_length = false;
    bool chunked = false;
    size_t length = 0;
    for (line = nl + 1;; line = nl + 1) {
        if (line >= end) return PARSE_INCOMPLETE;
        nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) return PARSE_INCOMPLETE;
        le = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
        if (le == line) break; /* blank line: end of headers */
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (!colon || colon == line) return PARSE_BAD;
        for (const char *c = line; c < colon; c++)
            if (!is_tchar((unsigned char)*c)) return PARSE_BAD; /* also: space before the colon */
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        for (const char *c = v; c < ve; c++)
            if ((unsigned char)*c < ' ' && *c != '\t') return PARSE_BAD;
        size_t nlen = (size_t)(colon - line), vlen = (size_t)(ve - v);
        if (nlen == 4 && strncasecmp(line, "host", 4) == 0) {
            if (have_host) return PARSE_BAD;
            have_host = true;
        } else if (nlen == 10 && strncasecmp(line, "connection", 10) == 0) {
            conn_close |= list_has(v, vlen, "close");
            conn_keep |= list_has(v, vlen, "keep-alive");
        } else if (nlen == 14 && strncasecmp(line, "content-length", 14) == 0) {
            size_t value = 0;
            if (vlen == 0 || vlen > 15) return PARSE_BAD;
            for (const char *c = v; c < ve; c++) {
                if (*c < '0' || *c > '9') return PARSE_BAD;
                value = value * 10 + (size_t)(*c - '0');
            }
            if (have_length && value != length) return PARSE_BAD;
            have_length = true;
            length = value;
        } else if (nlen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
            chunked = true;
        }
    }
    rq->header_len = (size_t)(nl + 1 - p);
    if (rq->http11 && !have_host) return PARSE_BAD;
    if (chunked) return PARSE_UNSUPPORTED;
    rq->content_length = length;
    rq->keep_alive = rq->http11 ? !conn_close : (conn_keep && !conn_close);
    return PARSE_OK;
}

#endif
