/* Per-row work of normalize and the NDJSON encoder, in C (tunnelhound.normalize._kernels).
 *
 * Python hands over whole columns (numpy arrays through the buffer protocol, or lists of
 * str) and gets back one bytes block or one list per column: no Python call per row.
 *
 *   render(parts, n, mode)  rows of text built from constant pieces and per-row values;
 *                           mode: one bytes block, a list of bytes, a list of str, or
 *                           the xxh3-128 hex digest of each row (event.id)
 *   community_ids(...)      Community ID v1 (SHA-1 + base64) of each row
 *   flow_ids(...)           Filebeat's flow.id (xxhash64 + base64url) of each row
 *
 * The pure-Python community_id.py and flow_id.py stay as the specification these are
 * tested against (tests/test_kernels.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

/* ------------------------------------------------------------------ output buffer */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
    PyObject *bytes; /* one block: the text is written straight into this bytes object */
    PyObject *array; /* ... or into this bytearray, which is grown but never shrunk */
} Buf;

static int buf_grow(Buf *b, Py_ssize_t need) {
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + need) cap *= 2;
    if (b->bytes) {
        if (_PyBytes_Resize(&b->bytes, cap) < 0) return -1;
        b->p = PyBytes_AS_STRING(b->bytes);
    } else if (b->array) {
        if (PyByteArray_Resize(b->array, cap) < 0) return -1;
        b->p = PyByteArray_AS_STRING(b->array);
    } else {
        char *p = PyMem_Realloc(b->p, (size_t)cap);
        if (!p) {
            PyErr_NoMemory();
            return -1;
        }
        b->p = p;
    }
    b->cap = cap;
    return 0;
}

#define RESERVE_OR(b, k, fail) \
    if ((b)->len + (Py_ssize_t)(k) > (b)->cap && buf_grow((b), (Py_ssize_t)(k)) < 0) fail
#define RESERVE(b, k) RESERVE_OR(b, k, return -1)

/* Most pieces are a few bytes: fixed-size copies compile to plain moves, a libc call does not. */
static inline void copy(char *dst, const char *src, Py_ssize_t k) {
    if (k >= 8 && k <= 16) {
        memcpy(dst, src, 8);
        memcpy(dst + k - 8, src + k - 8, 8);
    } else if (k >= 4 && k < 8) {
        memcpy(dst, src, 4);
        memcpy(dst + k - 4, src + k - 4, 4);
    } else if (k < 4) {
        for (Py_ssize_t i = 0; i < k; i++) dst[i] = src[i];
    } else {
        memcpy(dst, src, (size_t)k);
    }
}

static inline int put(Buf *b, const char *s, Py_ssize_t k) {
    RESERVE(b, k);
    copy(b->p + b->len, s, k);
    b->len += k;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

static const char DIGITS2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Decimal text of v at end-aligned position; returns the number of characters. */
static int utoa(uint64_t v, char *out /* >= 20 bytes */) {
    char tmp[20];
    int i = 20;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        i -= 2;
        memcpy(tmp + i, DIGITS2 + 2 * r, 2);
    }
    if (v >= 10) {
        i -= 2;
        memcpy(tmp + i, DIGITS2 + 2 * v, 2);
    } else {
        tmp[--i] = (char)('0' + v);
    }
    memcpy(out, tmp + i, (size_t)(20 - i));
    return 20 - i;
}

static int put_u64(Buf *b, uint64_t v) {
    RESERVE(b, 20);
    b->len += utoa(v, b->p + b->len);
    return 0;
}

static int put_i64(Buf *b, int64_t v) {
    RESERVE(b, 21);
    if (v < 0) {
        b->p[b->len++] = '-';
        b->len += utoa((uint64_t)0 - (uint64_t)v, b->p + b->len);
    } else {
        b->len += utoa((uint64_t)v, b->p + b->len);
    }
    return 0;
}

static int put_ipv4(Buf *b, uint32_t a) {
    RESERVE(b, 15);
    char *o = b->p + b->len;
    for (int shift = 24; shift >= 0; shift -= 8) {
        unsigned v = (a >> shift) & 0xFF;
        if (v >= 100) {
            *o++ = (char)('0' + v / 100);
            memcpy(o, DIGITS2 + 2 * (v % 100), 2);
            o += 2;
        } else if (v >= 10) {
            memcpy(o, DIGITS2 + 2 * v, 2);
            o += 2;
        } else {
            *o++ = (char)('0' + v);
        }
        if (shift) *o++ = '.';
    }
    b->len = o - b->p;
    return 0;
}

static int put_ipv6(Buf *b, const unsigned char *a) {
    RESERVE(b, INET6_ADDRSTRLEN);
    /* libc's inet_ntop is what socket.inet_ntop calls: the same RFC 5952 text. */
    if (!inet_ntop(AF_INET6, a, b->p + b->len, INET6_ADDRSTRLEN)) {
        PyErr_SetString(PyExc_ValueError, "inet_ntop failed");
        return -1;
    }
    b->len += (Py_ssize_t)strlen(b->p + b->len);
    return 0;
}

/* Days since 1970-01-01 -> civil date (H. Hinnant's days_from_civil inverse). */
static void civil(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* ISO 8601 UTC, milliseconds, as numpy's datetime_as_string(datetime64[ms], timezone="UTC")
 * writes a datetime64[ns] cast to [ms]; int64 nanoseconds span the years 1677-2262, so the
 * year has four digits. */
static int put_iso(Buf *b, int64_t ns) {
    if (ns == INT64_MIN) return put(b, "NaT", 3);
    RESERVE(b, 24);
    /* numpy's ns -> ms cast: floor division written as (ns - 999999) / 10**6 for negative
     * values, which wraps within 10**6 of INT64_MIN (garbage times show up as 2262 there);
     * the same arithmetic keeps our text equal to numpy's on every value. */
    int64_t ms = ns >= 0 ? ns / 1000000 : (int64_t)((uint64_t)ns - 999999u) / 1000000;
    int64_t secs = floordiv(ms, 1000);
    unsigned msec = (unsigned)(ms - secs * 1000);
    int64_t days = floordiv(secs, 86400);
    unsigned sod = (unsigned)(secs - days * 86400);
    int64_t y;
    unsigned mo, d;
    civil(days, &y, &mo, &d);
    char *o = b->p + b->len;
    memcpy(o, DIGITS2 + 2 * (y / 100), 2);
    memcpy(o + 2, DIGITS2 + 2 * (y % 100), 2);
    o[4] = '-';
    memcpy(o + 5, DIGITS2 + 2 * mo, 2);
    o[7] = '-';
    memcpy(o + 8, DIGITS2 + 2 * d, 2);
    o[10] = 'T';
    memcpy(o + 11, DIGITS2 + 2 * (sod / 3600), 2);
    o[13] = ':';
    memcpy(o + 14, DIGITS2 + 2 * (sod / 60 % 60), 2);
    o[16] = ':';
    memcpy(o + 17, DIGITS2 + 2 * (sod % 60), 2);
    o[19] = '.';
    o[20] = (char)('0' + msec / 100);
    memcpy(o + 21, DIGITS2 + 2 * (msec % 100), 2);
    o[23] = 'Z';
    b->len += 24;
    return 0;
}

/* ------------------------------------------------------------------------ render */

enum {
    K_STR = 1,  /* list of str/None: the text as it is (our own values or JSON text) */
    K_I64 = 2,  /* int64 array: decimal */
    K_U64 = 3,  /* uint64 array: decimal */
    K_PICK = 4, /* (int64 codes, tuple of bytes): the text with that index */
    K_IPV4 = 5, /* uint32 array (host order): dotted quad */
    K_IPV6 = 6, /* 16-byte items: RFC 5952 text */
    K_ISO = 7,  /* int64 ns since the epoch: ISO 8601 UTC, milliseconds */
    K_JSON = 8, /* list of str/None: a JSON string, escaped as orjson escapes */
    K_HEX = 9,  /* (n, w) bytes: lower-case hex of each row's w bytes (digests kept raw) */
    K_B64 = 10, /* (n, w) bytes: base64 (padded), or with url=1 base64url without padding */
    K_ROWS = 11, /* (int64 which, int64 at, tuple of (parts, n)): row `at` of sub-recipe `which`
                  * (recipes built differently, e.g. two templates' netflow objects, joined) */
    K_SPAN = 12, /* (bytes, int64 starts, int64 ends): a slice of one text per row (numbers that
                  * orjson wrote as one JSON array, no str object per value) */
};

/* M_XXH3_RAW: the 16-byte canonical xxh3-128 digest of every row, one bytes of 16 n. */
enum { M_BLOCK = 0, M_BYTES = 1, M_STR = 2, M_XXH3 = 3, M_XXH3_RAW = 4 };

/* Rows are rendered in tiles: the texts of a tile's rows are looked up column by column
 * first, so each column's objects are read in order (the prefetcher follows a few streams,
 * not the twenty-odd columns of a document read row by row). */
#define TILE 64
#define PREFETCH_ROWS 16

struct Span {
    const char *p;
    Py_ssize_t k; /* -1: None */
    int ascii;
};

struct Sub;

typedef struct {
    int kind;
    Py_buffer view;     /* K_I64 .. K_ISO, K_PICK's codes, K_ROWS's sub-recipe numbers */
    int has_view;
    PyObject *list;     /* K_STR: a list; K_PICK: the tuple of texts */
    Py_buffer mask;     /* optional bool array: rows where the value is present */
    int has_mask;
    const char *lead;                    /* written on every row, before the value or its absence */
    const char *before, *after, *absent; /* around a present value; instead of an absent one */
    Py_ssize_t nlead, nbefore, nafter, nabsent;
    const char *lit;    /* a constant piece (parts given as bytes) */
    Py_ssize_t nlit;
    struct Span *spans; /* K_STR: this tile's texts (see render_tile) */
    int ascii;          /* the part's constant texts are ASCII */
    Py_ssize_t width;   /* K_HEX, K_B64: bytes per row */
    int url;            /* K_B64: url-safe alphabet, padding dropped */
    Py_ssize_t rows, stride; /* rows of the part's recipe; bytes per row of `view` */
    Py_buffer at;       /* K_ROWS: the row of its sub-recipe each row is; K_SPAN: the ends */
    int has_at;
    struct Sub *subs;   /* K_ROWS: the sub-recipes */
    Py_ssize_t nsubs;
} Part;

struct Sub {
    Part *parts;
    Py_ssize_t k, n;
};

static void parts_free(Part *parts, Py_ssize_t k) {
    for (Py_ssize_t i = 0; i < k; i++) {
        if (parts[i].has_view) PyBuffer_Release(&parts[i].view);
        if (parts[i].has_mask) PyBuffer_Release(&parts[i].mask);
        if (parts[i].has_at) PyBuffer_Release(&parts[i].at);
        for (Py_ssize_t s = 0; s < parts[i].nsubs; s++)
            if (parts[i].subs[s].parts) parts_free(parts[i].subs[s].parts, parts[i].subs[s].k);
        PyMem_Free(parts[i].subs);
        PyMem_Free(parts[i].spans);
    }
    PyMem_Free(parts);
}

static int get_view(PyObject *obj, Py_buffer *view, Py_ssize_t n, Py_ssize_t itemsize, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len != n * itemsize) {
        PyErr_Format(PyExc_ValueError, "render: %s has %zd bytes, expected %zd rows of %zd", what,
                     view->len, n, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int bytes_arg(PyObject *obj, const char **p, Py_ssize_t *k) {
    if (!PyBytes_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "render: texts around values must be bytes");
        return -1;
    }
    *p = PyBytes_AS_STRING(obj);
    *k = PyBytes_GET_SIZE(obj);
    return 0;
}

static int is_ascii(const char *p, Py_ssize_t k) {
    for (Py_ssize_t i = 0; i < k; i++)
        if ((unsigned char)p[i] >= 0x80) return 0;
    return 1;
}

/* parts: list of bytes (constant) or (kind, data, mask|None, lead, before, after, absent).
 * The parts of a sub-recipe (`nested`) are read row by row in any order: no tile spans. */
static Part *parse_parts(PyObject *seq, Py_ssize_t n, Py_ssize_t *count, int nested) {
    if (!PyList_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "render: parts must be a list");
        return NULL;
    }
    Py_ssize_t k = PyList_GET_SIZE(seq);
    Part *parts = PyMem_Calloc((size_t)(k ? k : 1), sizeof(Part));
    if (!parts) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *item = PyList_GET_ITEM(seq, i);
        Part *pt = &parts[i];
        if (PyBytes_Check(item)) {
            pt->kind = 0;
            pt->lit = PyBytes_AS_STRING(item);
            pt->nlit = PyBytes_GET_SIZE(item);
            pt->ascii = is_ascii(pt->lit, pt->nlit);
            continue;
        }
        PyObject *data, *mask, *lead, *before, *after, *absent;
        if (!PyTuple_Check(item) ||
            !PyArg_ParseTuple(item, "iOOOOOO", &pt->kind, &data, &mask, &lead, &before, &after, &absent))
            goto fail;
        if (bytes_arg(lead, &pt->lead, &pt->nlead) < 0 || bytes_arg(before, &pt->before, &pt->nbefore) < 0 ||
            bytes_arg(after, &pt->after, &pt->nafter) < 0 ||
            bytes_arg(absent, &pt->absent, &pt->nabsent) < 0)
            goto fail;
        pt->ascii = is_ascii(pt->lead, pt->nlead) && is_ascii(pt->before, pt->nbefore) &&
                    is_ascii(pt->after, pt->nafter) && is_ascii(pt->absent, pt->nabsent);
        if (mask != Py_None) {
            if (get_view(mask, &pt->mask, n, 1, "a mask") < 0) goto fail;
            pt->has_mask = 1;
        }
        switch (pt->kind) {
        case K_STR:
        case K_JSON:
            if (!PyList_Check(data) || PyList_GET_SIZE(data) != n) {
                PyErr_SetString(PyExc_ValueError, "render: a text column must be a list of n items");
                goto fail;
            }
            pt->list = data;
            if (nested) break;
            pt->spans = PyMem_Malloc(TILE * sizeof(struct Span));
            if (!pt->spans) {
                PyErr_NoMemory();
                goto fail;
            }
            break;
        case K_PICK: {
            PyObject *codes, *texts;
            if (!PyArg_ParseTuple(data, "OO!", &codes, &PyTuple_Type, &texts)) goto fail;
            for (Py_ssize_t t = 0; t < PyTuple_GET_SIZE(texts); t++) {
                PyObject *text = PyTuple_GET_ITEM(texts, t);
                if (!PyBytes_Check(text)) {
                    PyErr_SetString(PyExc_TypeError, "render: pick texts must be bytes");
                    goto fail;
                }
                pt->ascii &= is_ascii(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text));
            }
            if (get_view(codes, &pt->view, n, 8, "a code column") < 0) goto fail;
            pt->has_view = 1;
            pt->list = texts;
            break;
        }
        case K_I64:
        case K_U64:
        case K_ISO:
            if (get_view(data, &pt->view, n, 8, "an integer column") < 0) goto fail;
            pt->has_view = 1;
            break;
        case K_IPV4:
            if (get_view(data, &pt->view, n, 4, "an IPv4 column") < 0) goto fail;
            pt->has_view = 1;
            break;
        case K_IPV6:
            if (get_view(data, &pt->view, n, 16, "an IPv6 column") < 0) goto fail;
            pt->has_view = 1;
            break;
        case K_HEX:
        case K_B64: {
            PyObject *column;
            if (!PyArg_ParseTuple(data, "On|i", &column, &pt->width, &pt->url)) goto fail;
            if (pt->kind == K_B64 && pt->width > 48) {
                PyErr_SetString(PyExc_ValueError, "render: base64 rows are at most 48 bytes");
                goto fail;
            }
            if (pt->width < 0 || get_view(column, &pt->view, n, pt->width, "a bytes column") < 0) goto fail;
            pt->has_view = 1;
            break;
        }
        case K_ROWS: {
            PyObject *which, *at, *subs;
            if (!PyArg_ParseTuple(data, "OOO!", &which, &at, &PyTuple_Type, &subs)) goto fail;
            if (get_view(which, &pt->view, n, 8, "a sub-recipe column") < 0) goto fail;
            pt->has_view = 1;
            if (get_view(at, &pt->at, n, 8, "a sub-row column") < 0) goto fail;
            pt->has_at = 1;
            Py_ssize_t m = PyTuple_GET_SIZE(subs);
            if (!(pt->subs = PyMem_Calloc((size_t)(m ? m : 1), sizeof(struct Sub)))) {
                PyErr_NoMemory();
                goto fail;
            }
            pt->nsubs = m;
            for (Py_ssize_t s = 0; s < m; s++) {
                PyObject *list;
                struct Sub *sub = &pt->subs[s];
                if (!PyArg_ParseTuple(PyTuple_GET_ITEM(subs, s), "On", &list, &sub->n)) goto fail;
                if (sub->n < 0 || !(sub->parts = parse_parts(list, sub->n, &sub->k, 1))) goto fail;
            }
            break;
        }
        case K_SPAN: {
            PyObject *starts, *ends;
            if (!PyArg_ParseTuple(data, "O!OO", &PyBytes_Type, &pt->list, &starts, &ends)) goto fail;
            pt->ascii &= is_ascii(PyBytes_AS_STRING(pt->list), PyBytes_GET_SIZE(pt->list));
            if (get_view(starts, &pt->view, n, 8, "a span start column") < 0) goto fail;
            pt->has_view = 1;
            if (get_view(ends, &pt->at, n, 8, "a span end column") < 0) goto fail;
            pt->has_at = 1;
            break;
        }
        default:
            PyErr_Format(PyExc_ValueError, "render: unknown part kind %d", pt->kind);
            goto fail;
        }
        pt->rows = n;
        pt->stride = pt->has_view && n ? pt->view.len / n : 0;
    }
    *count = k;
    return parts;
fail:
    parts_free(parts, k);
    return NULL;
}

/* A JSON string of UTF-8 text: quotes, backslash and control characters escaped as orjson
 * does (short forms where JSON has them, else \u00xx); everything else as it is. */
static int put_json(Buf *b, const char *s, Py_ssize_t k) {
    RESERVE(b, 6 * k + 2);
    char *o = b->p + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            memcpy(o, "u00", 3);
            o[3] = HEX[c >> 4];
            o[4] = HEX[c & 15];
            o += 5;
        }
    }
    *o++ = '"';
    b->len = o - b->p;
    return 0;
}

static int put_hex(Buf *b, const unsigned char *s, Py_ssize_t k) {
    RESERVE(b, 2 * k);
    char *o = b->p + b->len;
    for (Py_ssize_t i = 0; i < k; i++) {
        o[2 * i] = HEX[s[i] >> 4];
        o[2 * i + 1] = HEX[s[i] & 15];
    }
    b->len += 2 * k;
    return 0;
}

static Py_ssize_t b64(const unsigned char *in, size_t len, const char *alphabet, char *out);
static const char B64[65], B64URL[65];

static int put_b64(Buf *b, const unsigned char *s, Py_ssize_t k, int url) {
    char text[64];
    Py_ssize_t m = b64(s, (size_t)k, url ? B64URL : B64, text);
    while (url && m && text[m - 1] == '=') m--;
    return put(b, text, m);
}

/* The text of a text column's item (k = -1: None). */
static int span_of(PyObject *s, struct Span *sp) {
    sp->ascii = 1;
    if (s == Py_None) {
        sp->k = -1;
    } else if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "render: a text column holds a non-str value");
        return -1;
    } else if (PyUnicode_IS_COMPACT_ASCII(s)) {
        sp->p = (const char *)PyUnicode_DATA(s);
        sp->k = PyUnicode_GET_LENGTH(s);
    } else if (!(sp->p = PyUnicode_AsUTF8AndSize(s, &sp->k))) {
        return -1; /* the UTF-8 form is cached in the str, which the list keeps alive */
    } else {
        sp->ascii = 0;
    }
    return 0;
}

/* Look up the texts of rows [r0, r0 + count) of every text column. */
static int gather_tile(Part *parts, Py_ssize_t k, Py_ssize_t r0, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < k; i++) {
        Part *pt = &parts[i];
        if (pt->kind != K_STR && pt->kind != K_JSON) continue;
        for (Py_ssize_t j = 0; j < count; j++) {
            /* The str objects lie anywhere in the heap: ask for one a few items ahead. */
            if (j + 4 < count) __builtin_prefetch(PyList_GET_ITEM(pt->list, r0 + j + 4), 0, 0);
            if (span_of(PyList_GET_ITEM(pt->list, r0 + j), &pt->spans[j]) < 0) return -1;
        }
    }
    return 0;
}

/* Row r (j-th of its tile; parts of a sub-recipe have no tile); *ascii is cleared when the
 * row's text may not be ASCII. */
static int render_row(Buf *b, Part *parts, Py_ssize_t k, Py_ssize_t r, Py_ssize_t j, int *ascii) {
    for (Py_ssize_t i = 0; i < k; i++) {
        Part *pt = &parts[i];
        struct Span text = {NULL, 0, 1};
        if (pt->kind == K_STR || pt->kind == K_JSON) {
            if (pt->spans) text = pt->spans[j];
            else if (span_of(PyList_GET_ITEM(pt->list, r), &text) < 0) return -1;
        }
        *ascii &= pt->ascii & text.ascii;
        if (pt->kind == 0) {
            if (put(b, pt->lit, pt->nlit) < 0) return -1;
            continue;
        }
        /* A document reads seventy-odd columns a row, more streams than the hardware prefetcher
         * follows: ask for each column's value a few rows ahead (min of runs: 2.2 -> 1.7 us a row). */
        if (pt->stride && r + PREFETCH_ROWS < pt->rows)
            __builtin_prefetch((const char *)pt->view.buf + pt->stride * (r + PREFETCH_ROWS), 0, 0);
        if (pt->nlead && put(b, pt->lead, pt->nlead) < 0) return -1;
        int present = text.k >= 0;
        if (present && pt->has_mask) present = ((const char *)pt->mask.buf)[r] != 0;
        if (!present) {
            if (pt->nabsent && put(b, pt->absent, pt->nabsent) < 0) return -1;
            continue;
        }
        if (pt->nbefore && put(b, pt->before, pt->nbefore) < 0) return -1;
        int rc = 0;
        switch (pt->kind) {
        case K_STR:
            rc = put(b, text.p, text.k);
            break;
        case K_JSON:
            rc = put_json(b, text.p, text.k);
            break;
        case K_I64:
            rc = put_i64(b, ((const int64_t *)pt->view.buf)[r]);
            break;
        case K_U64:
            rc = put_u64(b, ((const uint64_t *)pt->view.buf)[r]);
            break;
        case K_ISO:
            rc = put_iso(b, ((const int64_t *)pt->view.buf)[r]);
            break;
        case K_IPV4:
            rc = put_ipv4(b, ((const uint32_t *)pt->view.buf)[r]);
            break;
        case K_IPV6:
            rc = put_ipv6(b, (const unsigned char *)pt->view.buf + 16 * r);
            break;
        case K_HEX:
            rc = put_hex(b, (const unsigned char *)pt->view.buf + pt->width * r, pt->width);
            break;
        case K_B64:
            rc = put_b64(b, (const unsigned char *)pt->view.buf + pt->width * r, pt->width, pt->url);
            break;
        case K_PICK: {
            int64_t code = ((const int64_t *)pt->view.buf)[r];
            if (code < 0 || code >= PyTuple_GET_SIZE(pt->list)) {
                PyErr_Format(PyExc_IndexError, "render: pick code %lld out of range", (long long)code);
                return -1;
            }
            PyObject *t = PyTuple_GET_ITEM(pt->list, code);
            rc = put(b, PyBytes_AS_STRING(t), PyBytes_GET_SIZE(t));
            break;
        }
        case K_SPAN: {
            int64_t from = ((const int64_t *)pt->view.buf)[r], to = ((const int64_t *)pt->at.buf)[r];
            if (from < 0 || from > to || to > PyBytes_GET_SIZE(pt->list)) {
                PyErr_Format(PyExc_IndexError, "render: span [%lld, %lld) out of range", (long long)from,
                             (long long)to);
                return -1;
            }
            rc = put(b, PyBytes_AS_STRING(pt->list) + from, (Py_ssize_t)(to - from));
            break;
        }
        case K_ROWS: {
            int64_t s = ((const int64_t *)pt->view.buf)[r], at = ((const int64_t *)pt->at.buf)[r];
            if (s < 0 || s >= pt->nsubs || at < 0 || at >= pt->subs[s].n) {
                PyErr_Format(PyExc_IndexError, "render: sub-recipe row (%lld, %lld) out of range", (long long)s,
                             (long long)at);
                return -1;
            }
            rc = render_row(b, pt->subs[s].parts, pt->subs[s].k, (Py_ssize_t)at, -1, ascii);
            break;
        }
        }
        if (rc < 0) return -1;
        if (pt->nafter && put(b, pt->after, pt->nafter) < 0) return -1;
    }
    return 0;
}

static PyObject *ascii_str(const char *p, Py_ssize_t k) {
    PyObject *s = PyUnicode_New(k, 127);
    if (s) memcpy(PyUnicode_1BYTE_DATA(s), p, (size_t)k);
    return s;
}

static PyObject *py_render(PyObject *self, PyObject *args) {
    PyObject *seq, *into = NULL;
    Py_ssize_t n, start = 0, stop = 0;
    int mode;
    if (!PyArg_ParseTuple(args, "O!ni|O!nn", &PyList_Type, &seq, &n, &mode, &PyByteArray_Type, &into, &start,
                          &stop))
        return NULL;
    if (PyTuple_GET_SIZE(args) < 6) stop = n;
    if (n < 0 || mode < M_BLOCK || mode > M_XXH3_RAW || (into && mode != M_BLOCK)) {
        PyErr_SetString(PyExc_ValueError, "render: bad row count or mode");
        return NULL;
    }
    if (start < 0 || start > stop || stop > n) {
        PyErr_SetString(PyExc_ValueError, "render: rows out of range");
        return NULL;
    }
    /* Only rows [start, stop) are written: a writer can render a frame in cache-sized pieces
     * from one parse of its columns. */
    Py_ssize_t rows = stop - start;
    Py_ssize_t k;
    Part *parts = parse_parts(seq, n, &k, 0);
    if (!parts) return NULL;
    Buf b = {NULL, 0, 0, NULL, into};
    PyObject *out = NULL;
    if (into) {
        /* Reusing one buffer spares the page faults of fresh memory (half the cost of a
         * block when each one is newly allocated). */
        b.p = PyByteArray_AS_STRING(into);
        b.cap = PyByteArray_GET_SIZE(into);
    } else if (mode == M_BLOCK) {
        if (!(b.bytes = PyBytes_FromStringAndSize(NULL, 4096))) goto fail;
        b.p = PyBytes_AS_STRING(b.bytes);
        b.cap = 4096;
    } else if (mode == M_XXH3_RAW) {
        if (!(out = PyBytes_FromStringAndSize(NULL, 16 * rows))) goto fail;
    } else if (!(out = PyList_New(rows))) {
        goto fail;
    }
    for (Py_ssize_t r = start; r < stop; r++) {
        Py_ssize_t j = (r - start) % TILE;
        if (j == 0 && gather_tile(parts, k, r, stop - r < TILE ? stop - r : TILE) < 0) goto fail;
        if (mode != M_BLOCK) b.len = 0;
        int ascii = 1;
        if (render_row(&b, parts, k, r, j, &ascii) < 0) goto fail;
        if (mode == M_BLOCK && r == start && rows > 1) {
            /* Rows of a frame are about the same length: reserve for all of them at once. */
            RESERVE_OR(&b, b.len * (rows - 1) + b.len / 4, goto fail);
        }
        PyObject *item = NULL;
        switch (mode) {
        case M_BLOCK:
            continue;
        case M_BYTES:
            item = PyBytes_FromStringAndSize(b.p, b.len);
            break;
        case M_STR:
            /* All-ASCII rows (nearly all) skip the UTF-8 decoder's scan. */
            item = ascii ? ascii_str(b.p, b.len) : PyUnicode_DecodeUTF8(b.p ? b.p : "", b.len, "strict");
            break;
        case M_XXH3_RAW: {
            XXH128_canonical_t c;
            XXH128_canonicalFromHash(&c, XXH3_128bits(b.p, (size_t)b.len));
            memcpy(PyBytes_AS_STRING(out) + 16 * (r - start), c.digest, 16);
            continue;
        }
        case M_XXH3: {
            XXH128_canonical_t c;
            XXH128_canonicalFromHash(&c, XXH3_128bits(b.p, (size_t)b.len));
            char hex[32];
            for (int j = 0; j < 16; j++) {
                hex[2 * j] = HEX[c.digest[j] >> 4];
                hex[2 * j + 1] = HEX[c.digest[j] & 15];
            }
            item = ascii_str(hex, 32);
            break;
        }
        }
        if (!item) goto fail;
        PyList_SET_ITEM(out, r - start, item);
    }
    if (into) {
        out = PyLong_FromSsize_t(b.len);
    } else if (mode == M_BLOCK) {
        if (_PyBytes_Resize(&b.bytes, b.len) < 0) goto fail;
        out = b.bytes;
    } else {
        PyMem_Free(b.p);
    }
    parts_free(parts, k);
    return out;
fail:
    Py_XDECREF(out);
    if (mode != M_BLOCK) PyMem_Free(b.p);
    else if (!into) Py_XDECREF(b.bytes); /* a failed resize has freed it and set NULL */
    parts_free(parts, k);
    return NULL;
}

/* -------------------------------------------------------------------- flow hashes */

/* SHA-1 (FIPS 180-4) of a short message; Community ID hashes at most 40 bytes. */
#define ROL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))

static inline uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One 64-byte block. The four round functions each get their own loop (no branch per
 * round) and the schedule is a rolling window of 16 words. */
static void sha1_block(uint32_t h[5], const unsigned char *blk) {
    uint32_t w[16];
    for (int i = 0; i < 16; i++) w[i] = be32(blk + 4 * i);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], t;
#define W(i) (i < 16 ? w[i] : (w[i & 15] = ROL(w[(i + 13) & 15] ^ w[(i + 8) & 15] ^ w[(i + 2) & 15] ^ w[i & 15], 1)))
#define STEP(f, k, i)                                \
    t = ROL(a, 5) + (f) + e + (uint32_t)(k) + W(i); \
    e = d;                                           \
    d = c;                                           \
    c = ROL(b, 30);                                  \
    b = a;                                           \
    a = t
    for (int i = 0; i < 20; i++) {
        STEP(d ^ (b & (c ^ d)), 0x5A827999, i);
    }
    for (int i = 20; i < 40; i++) {
        STEP(b ^ c ^ d, 0x6ED9EBA1, i);
    }
    for (int i = 40; i < 60; i++) {
        STEP((b & c) | (d & (b | c)), 0x8F1BBCDC, i);
    }
    for (int i = 60; i < 80; i++) {
        STEP(b ^ c ^ d, 0xCA62C1D6, i);
    }
#undef STEP
#undef W
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHA_NI_PATH 1

/* The same block with the x86 SHA extensions (SHA-NI: AMD Zen, Intel since Ice Lake), about
 * four times faster; picked at import when the CPU has them (sha1_use_ni). */
__attribute__((target("sha,sse4.1,ssse3"))) static void sha1_block_ni(uint32_t h[5], const unsigned char *blk) {
    const __m128i order = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
    __m128i w[20];
    for (int g = 0; g < 4; g++) w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(blk + 16 * g)), order);
    for (int g = 4; g < 20; g++)
        w[g] = _mm_sha1msg2_epu32(_mm_xor_si128(_mm_sha1msg1_epu32(w[g - 4], w[g - 3]), w[g - 2]), w[g - 1]);
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0x1B);
    __m128i e0 = _mm_set_epi32((int)h[4], 0, 0, 0);
    const __m128i abcd_in = abcd, e_in = e0;
    __m128i e = _mm_add_epi32(e0, w[0]);
    __m128i prev = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, e, 0);
    /* Four rounds a step; the round function changes every 20 rounds (immediate operand). */
#define STEPS(from, to, f)                            \
    for (int g = from; g < to; g++) {                 \
        e = _mm_sha1nexte_epu32(prev, w[g]);          \
        prev = abcd;                                  \
        abcd = _mm_sha1rnds4_epu32(abcd, e, f);       \
    }
    STEPS(1, 5, 0)
    STEPS(5, 10, 1)
    STEPS(10, 15, 2)
    STEPS(15, 20, 3)
#undef STEPS
    e = _mm_sha1nexte_epu32(prev, e_in);
    abcd = _mm_shuffle_epi32(_mm_add_epi32(abcd, abcd_in), 0x1B);
    _mm_storeu_si128((__m128i *)h, abcd);
    h[4] = (uint32_t)_mm_extract_epi32(e, 3);
}

static int sha1_use_ni(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3)) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & (1u << 29)) != 0; /* CPUID.7.0:EBX.SHA */
}
#endif

static void (*sha1_block_fn)(uint32_t h[5], const unsigned char *blk) = sha1_block;

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t full = len / 64 * 64;
    for (size_t i = 0; i < full; i += 64) sha1_block_fn(h, msg + i);
    unsigned char tail[128] = {0};
    size_t rest = len - full;
    memcpy(tail, msg + full, rest);
    tail[rest] = 0x80;
    size_t tlen = rest + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tlen - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < tlen; i += 64) sha1_block_fn(h, tail + i);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

static const char B64[65] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[65] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Base64 of len bytes (padded with '='); returns the characters written. */
static Py_ssize_t b64(const unsigned char *in, size_t len, const char *alphabet, char *out) {
    Py_ssize_t o = 0;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

typedef struct {
    Py_buffer proto, sport, dport, ok, src, src_v6, dst, dst_v6;
    int got;
} Tuples;

static void tuples_free(Tuples *t) {
    Py_buffer *v[] = {&t->proto, &t->sport, &t->dport, &t->ok, &t->src, &t->src_v6, &t->dst, &t->dst_v6};
    for (int i = 0; i < t->got; i++) PyBuffer_Release(v[i]);
}

/* proto, sport, dport: int64; ok, src_v6, dst_v6: bool; src, dst: 16 bytes a row (an IPv4
 * address in the first 4). */
static int tuples_get(Tuples *t, PyObject *const objs[8], Py_ssize_t n) {
    Py_buffer *v[] = {&t->proto, &t->sport, &t->dport, &t->ok, &t->src, &t->src_v6, &t->dst, &t->dst_v6};
    static const Py_ssize_t sizes[] = {8, 8, 8, 1, 16, 1, 16, 1};
    t->got = 0;
    for (int i = 0; i < 8; i++) {
        if (get_view(objs[i], v[i], n, sizes[i], "a flow tuple column") < 0) {
            tuples_free(t);
            return -1;
        }
        t->got++;
    }
    return 0;
}

/* Zeek's two-way ICMP/ICMPv6 types: the counterpart type, or -1 for a one-way message. */
static int icmp_counterpart(int64_t proto, int64_t type) {
    if (proto == 1) {
        switch (type) {
        case 8: return 0;
        case 0: return 8;
        case 13: return 14;
        case 14: return 13;
        case 15: return 16;
        case 16: return 15;
        case 10: return 9;
        case 9: return 10;
        case 17: return 18;
        case 18: return 17;
        }
    } else {
        switch (type) {
        case 128: return 129;
        case 129: return 128;
        case 130: return 131;
        case 131: return 130;
        case 133: return 134;
        case 134: return 133;
        case 135: return 136;
        case 136: return 135;
        case 139: return 140;
        case 140: return 139;
        case 144: return 145;
        case 145: return 144;
        }
    }
    return -1;
}

/* The ids of n rows: a list of str/None, or with raw set the digests (n * width bytes, zeros
 * where absent) and a present flag per row, for a recipe that renders the text later. */
typedef struct {
    PyObject *list, *digests, *present;
    Py_ssize_t width;
} Ids;

static int ids_new(Ids *o, Py_ssize_t n, Py_ssize_t width, int raw) {
    o->list = o->digests = o->present = NULL;
    o->width = width;
    if (!raw) return (o->list = PyList_New(n)) ? 0 : -1;
    o->digests = PyBytes_FromStringAndSize(NULL, n * width);
    o->present = PyBytes_FromStringAndSize(NULL, n);
    return o->digests && o->present ? 0 : -1;
}

static void ids_absent(Ids *o, Py_ssize_t r) {
    if (o->list) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(o->list, r, Py_None);
        return;
    }
    memset(PyBytes_AS_STRING(o->digests) + o->width * r, 0, (size_t)o->width);
    PyBytes_AS_STRING(o->present)[r] = 0;
}

/* Row r's digest, or (list mode) its text; -1 on a failed allocation. */
static int ids_set(Ids *o, Py_ssize_t r, const unsigned char *digest, const char *text, Py_ssize_t k) {
    if (o->list) {
        PyObject *s = ascii_str(text, k);
        if (!s) return -1;
        PyList_SET_ITEM(o->list, r, s);
        return 0;
    }
    memcpy(PyBytes_AS_STRING(o->digests) + o->width * r, digest, (size_t)o->width);
    PyBytes_AS_STRING(o->present)[r] = 1;
    return 0;
}

static PyObject *ids_result(Ids *o, int ok) {
    if (ok && o->list) return o->list;
    PyObject *out = ok ? PyTuple_Pack(2, o->digests, o->present) : NULL;
    Py_XDECREF(o->list);
    Py_XDECREF(o->digests);
    Py_XDECREF(o->present);
    return out;
}

static PyObject *py_community_ids(PyObject *self, PyObject *args) {
    PyObject *objs[8];
    Py_ssize_t n;
    long seed;
    int raw = 0;
    if (!PyArg_ParseTuple(args, "nOOOOOOOOl|p", &n, &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5],
                          &objs[6], &objs[7], &seed, &raw))
        return NULL;
    if (seed < 0 || seed > 0xFFFF) {
        PyErr_Format(PyExc_ValueError, "community_id: seed %ld is not 0..65535", seed);
        return NULL;
    }
    Tuples t;
    if (tuples_get(&t, objs, n) < 0) return NULL;
    Ids out;
    int good = 0;
    if (ids_new(&out, n, 20, raw) < 0) goto done;
    const int64_t *proto = t.proto.buf, *sport = t.sport.buf, *dport = t.dport.buf;
    const char *ok = t.ok.buf, *sv6 = t.src_v6.buf, *dv6 = t.dst_v6.buf;
    for (Py_ssize_t r = 0; r < n; r++) {
        if (!ok[r] || sv6[r] != dv6[r]) {
            ids_absent(&out, r);
            continue;
        }
        const unsigned char *a = (const unsigned char *)t.src.buf + 16 * r;
        const unsigned char *b = (const unsigned char *)t.dst.buf + 16 * r;
        size_t alen = sv6[r] ? 16 : 4;
        int64_t p = proto[r], sp = sport[r], dp = dport[r];
        int ports = 1, order = 1;
        if (p != 6 && p != 17 && p != 132) {
            if (p == 1 || p == 58) {
                int other = icmp_counterpart(p, sp);
                if (other < 0) order = 0; /* one-way: (type, code) as it is, never swapped */
                else dp = other;
            } else {
                ports = 0;
            }
        }
        if (order) {
            int c = memcmp(a, b, alen);
            if (c > 0 || (c == 0 && ports && sp > dp)) {
                const unsigned char *x = a;
                a = b;
                b = x;
                int64_t y = sp;
                sp = dp;
                dp = y;
            }
        }
        unsigned char msg[40];
        size_t m = 0;
        msg[m++] = (unsigned char)(seed >> 8);
        msg[m++] = (unsigned char)seed;
        memcpy(msg + m, a, alen);
        m += alen;
        memcpy(msg + m, b, alen);
        m += alen;
        msg[m++] = (unsigned char)p;
        msg[m++] = 0;
        if (ports) {
            msg[m++] = (unsigned char)(sp >> 8);
            msg[m++] = (unsigned char)sp;
            msg[m++] = (unsigned char)(dp >> 8);
            msg[m++] = (unsigned char)dp;
        }
        unsigned char digest[20];
        sha1(msg, m, digest);
        char text[30] = {'1', ':'};
        Py_ssize_t k = raw ? 0 : 2 + b64(digest, 20, B64, text + 2);
        if (ids_set(&out, r, digest, text, k) < 0) goto done;
    }
    good = 1;
done:
    tuples_free(&t);
    return ids_result(&out, good);
}

static PyObject *py_flow_ids(PyObject *self, PyObject *args) {
    PyObject *objs[8];
    Py_ssize_t n;
    int raw = 0;
    if (!PyArg_ParseTuple(args, "nOOOOOOOO|p", &n, &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5],
                          &objs[6], &objs[7], &raw))
        return NULL;
    Tuples t;
    if (tuples_get(&t, objs, n) < 0) return NULL;
    Ids out;
    int good = 0;
    if (ids_new(&out, n, 8, raw) < 0) goto done;
    const int64_t *proto = t.proto.buf, *sport = t.sport.buf, *dport = t.dport.buf;
    const char *ok = t.ok.buf, *sv6 = t.src_v6.buf, *dv6 = t.dst_v6.buf;
    for (Py_ssize_t r = 0; r < n; r++) {
        if (!ok[r]) {
            ids_absent(&out, r);
            continue;
        }
        const unsigned char *a = (const unsigned char *)t.src.buf + 16 * r;
        const unsigned char *b = (const unsigned char *)t.dst.buf + 16 * r;
        size_t alen = sv6[r] ? 16 : 4, blen = dv6[r] ? 16 : 4;
        int64_t sp = sport[r], dp = dport[r];
        /* The higher port first; on equal ports the source as given (Filebeat's rule). */
        if (sp < dp) {
            const unsigned char *x = a;
            a = b;
            b = x;
            size_t z = alen;
            alen = blen;
            blen = z;
            int64_t y = sp;
            sp = dp;
            dp = y;
        }
        unsigned char msg[37];
        size_t m = 0;
        memcpy(msg, a, alen);
        m += alen;
        msg[m++] = (unsigned char)(sp >> 8);
        msg[m++] = (unsigned char)sp;
        memcpy(msg + m, b, blen);
        m += blen;
        msg[m++] = (unsigned char)(dp >> 8);
        msg[m++] = (unsigned char)dp;
        msg[m++] = (unsigned char)proto[r];
        XXH64_canonical_t c;
        XXH64_canonicalFromHash(&c, XXH64(msg, m, 0));
        char text[12];
        if (!raw) b64(c.digest, 8, B64URL, text); /* 11 characters and one '=', which is dropped */
        if (ids_set(&out, r, c.digest, text, 11) < 0) goto done;
    }
    good = 1;
done:
    tuples_free(&t);
    return ids_result(&out, good);
}

/* ----------------------------------------------------------------------- newlines */

static PyObject *py_count_newlines(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    /* memchr skips whole vectors of non-newline bytes; bytes.count(b"\n") goes a byte at a
     * time (a third of a microsecond per 1.5 kB document). */
    const char *p = view.buf, *end = p + view.len;
    Py_ssize_t count = 0;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
        count++;
        p++;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(count);
}

/* ------------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"render", py_render, METH_VARARGS,
     "render(parts, n, mode[, into[, start, stop]]): n rows of text from constant bytes and per-row "
     "value parts; with a bytearray `into` (block mode), written into it from the start and the length "
     "returned; with start and stop, only rows [start, stop)."},
    {"count_newlines", py_count_newlines, METH_VARARGS,
     "count_newlines(data): the number of b'\\n' bytes in a bytes-like object."},
    {"community_ids", py_community_ids, METH_VARARGS,
     "community_ids(n, proto, sport, dport, ok, src, src_v6, dst, dst_v6, seed): Community ID v1 "
     "per row (None where not ok or the address families differ); with raw=True, (20-byte SHA-1 "
     "digests, present flags) as bytes."},
    {"flow_ids", py_flow_ids, METH_VARARGS,
     "flow_ids(n, proto, sport, dport, ok, src, src_v6, dst, dst_v6): Filebeat's flow.id per row "
     "(None where not ok); with raw=True, (8-byte xxh64 digests, present flags) as bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels", "Per-row normalize and NDJSON work in C (see kernels.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
#ifdef HAVE_SHA_NI_PATH
    /* TUNNELHOUND_NO_SHA_NI=1 keeps the portable SHA-1 (tests run both). */
    const char *off = getenv("TUNNELHOUND_NO_SHA_NI");
    if (sha1_use_ni() && !(off && *off == '1')) sha1_block_fn = sha1_block_ni;
#endif
    if (PyModule_AddStringConstant(m, "SHA1", sha1_block_fn == sha1_block ? "portable" : "sha-ni") < 0) {
        Py_DECREF(m);
        return NULL;
    }
    static const struct {
        const char *name;
        int value;
    } constants[] = {
        {"STR", K_STR},     {"I64", K_I64},     {"U64", K_U64},       {"PICK", K_PICK},   {"IPV4", K_IPV4},
        {"IPV6", K_IPV6},   {"ISO", K_ISO},     {"JSON", K_JSON},     {"BLOCK", M_BLOCK},   {"BYTES", M_BYTES}, {"TEXT", M_STR},
        {"XXH3_128", M_XXH3}, {"XXH3_128_DIGEST", M_XXH3_RAW}, {"HEX", K_HEX}, {"B64", K_B64}, {"ROWS", K_ROWS}, {"SPAN", K_SPAN},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    return m;
}
