/* The instance ingest's hot loop in C: whole JSONL lines -> column buffers for Arrow.
 *
 * `scan_rows` reads every line of `data` and validates each strictly as RFC 8259 JSON (UTF-8
 * checked, no control characters in strings, nothing after the object), plus the NaN, Infinity
 * and -Infinity that Python's `json` reads and writes.
 * For the keys the caller names it fills column buffers that `instance_parse` wraps as Arrow
 * arrays without copying:
 *
 *   ints   an integer literal within int64 (int64 values)
 *   texts  a string (unescaped UTF-8), an integer literal (its digits), null or absent (NULL)
 *   jsons  any value as its exact source text (key order, spacing, escapes kept); null or
 *          absent is NULL
 *   task   a string compared with the file's task name (rows that differ are counted)
 *
 * A line it cannot vouch for (malformed, or valid JSON this fast path does not convert: a
 * non-object row, a float or bool where text is wanted, a missing or non-int64 integer, an
 * escaped key in the row object, a lone surrogate in a text or a key, deep nesting; or JSON the
 * stdlib path rejects: a key twice in one object, at any depth and however escaped, or an integer
 * literal longer than Python's `sys.get_int_max_str_digits()`; or an object of more than MAX_KEYS
 * keys, which would make the duplicate check slow) is refused: reported with
 * its byte range, line number and the row position it belongs at, for the caller to redo with the
 * stdlib `json`, which either converts it or raises the precise `file:line: problem` error.
 * Blank lines are skipped but counted. One pass over the data, whatever it holds.
 *
 * The scan runs without the GIL, so several threads parse chunks in parallel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_FIELDS 16
#define MAX_DEPTH 200
#define MAX_KEYS 1024 /* keys of one object checked for duplicates; an object with more is refused */

enum kind { K_INT, K_TEXT, K_JSON, K_TASK };
enum vtype { V_ABSENT, V_STRING, V_INT, V_NULL, V_OTHER };

typedef struct {
    const char *name;
    Py_ssize_t len;
    int kind;
    int column;
} Field;

typedef struct {
    const uint8_t *start, *end; /* the value's source text */
    int type;
    int escaped; /* a string with backslash escapes */
} Span;

typedef struct {
    PyObject *data, *offsets, *validity;
    char *d;
    int32_t *o;
    uint8_t *v;
    Py_ssize_t len;
} TextColumn;

typedef struct {
    Field fields[MAX_FIELDS];
    int n_fields, n_ints, n_texts;
    const char *expected;
    Py_ssize_t expected_len;
} Spec;

typedef struct {
    const uint8_t *text; /* the key's unescaped UTF-8 */
    Py_ssize_t len;
    uint64_t hash;
} Key;

/* A line's scan state besides the line: the keys of the objects open around the current point
 * (innermost last), to find a duplicate, and room where escaped keys are unescaped. Reset per
 * line; the memory is kept for the call. */
typedef struct {
    Py_ssize_t max_digits; /* the longest integer literal Python reads; 0: no limit */
    Key *keys;
    Py_ssize_t n_keys, capacity;
    uint8_t *unescaped; /* made at the first escaped key: as long as the data, a line's bound */
    Py_ssize_t unescaped_len, unescaped_size;
    int out_of_memory;
} Ctx;

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

static inline int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static inline int hex_value(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Length of the well-formed UTF-8 sequence at p (Unicode Table 3-7), 0 if ill-formed. */
static int utf8_sequence(const uint8_t *p, const uint8_t *e) {
    uint8_t c = p[0];
    Py_ssize_t left = e - p;
    uint8_t lo = 0x80, hi = 0xBF;
    int n;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (left < n || p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* p at the opening quote; returns just after the closing quote, NULL if not a valid string. */
static const uint8_t *scan_string(const uint8_t *p, const uint8_t *e, int *escaped) {
    p++;
    for (;;) {
#ifdef __SSE2__
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
        const __m128i space = _mm_set1_epi8(0x20);
        while (e - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            /* signed compare: bytes below 0x20 and bytes 0x80+ (negative) both stop the skip */
            __m128i special = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                _mm_cmplt_epi8(v, space));
            int mask = _mm_movemask_epi8(special);
            if (mask) {
                p += __builtin_ctz(mask);
                break;
            }
            p += 16;
        }
#endif
        if (p >= e) return NULL;
        uint8_t c = *p;
        if (c == '"') return p + 1;
        if (c == '\\') {
            if (e - p < 2) return NULL;
            *escaped = 1;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u':
                if (e - p < 6) return NULL;
                for (int i = 2; i < 6; i++)
                    if (hex_value(p[i]) < 0) return NULL;
                p += 6;
                break;
            default:
                return NULL;
            }
        } else if (c < 0x20) {
            return NULL;
        } else if (c < 0x80) {
            p++;
        } else {
            int n = utf8_sequence(p, e);
            if (!n) return NULL;
            p += n;
        }
    }
}

/* An integer literal of more than `max_digits` digits (0: no limit) is refused: Python's `int`
 * cannot read it, so the stdlib path would reject the line. */
static const uint8_t *scan_number(const uint8_t *p, const uint8_t *e, Py_ssize_t max_digits,
                                  int *is_int) {
    if (p < e && *p == '-') p++;
    if (p >= e) return NULL;
    const uint8_t *digits = p;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9')
        while (p < e && is_digit(*p)) p++;
    else return NULL;
    *is_int = 1;
    Py_ssize_t n_digits = p - digits;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !is_digit(*p)) return NULL;
        while (p < e && is_digit(*p)) p++;
        *is_int = 0;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || !is_digit(*p)) return NULL;
        while (p < e && is_digit(*p)) p++;
        *is_int = 0;
    }
    if (*is_int && max_digits && n_digits > max_digits) return NULL;
    return p;
}

static const uint8_t *scan_literal(const uint8_t *p, const uint8_t *e, const char *word, int n) {
    return (e - p >= n && memcmp(p, word, n) == 0) ? p + n : NULL;
}

static Py_ssize_t unescape(const uint8_t *s, const uint8_t *e, uint8_t *out);

static uint64_t fnv1a(const uint8_t *p, Py_ssize_t n) {
    uint64_t hash = 14695981039346656037ULL;
    for (Py_ssize_t i = 0; i < n; i++) hash = (hash ^ p[i]) * 1099511628211ULL;
    return hash;
}

/* Record the key [s, e) (a validated string literal, `escaped` if it has escapes) of the object
 * whose keys start at `base`; 0 if the line is refused: a duplicate (compared unescaped, as the
 * stdlib compares them), a lone surrogate, more than MAX_KEYS keys, or no memory. */
static int add_key(Ctx *ctx, Py_ssize_t base, const uint8_t *s, const uint8_t *e, int escaped) {
    if (ctx->n_keys - base >= MAX_KEYS) return 0;
    const uint8_t *text = s + 1;
    Py_ssize_t len = e - s - 2;
    if (escaped) {
        if (!ctx->unescaped && !(ctx->unescaped = PyMem_RawMalloc(ctx->unescaped_size + 1))) {
            ctx->out_of_memory = 1;
            return 0;
        }
        uint8_t *out = ctx->unescaped + ctx->unescaped_len;
        if ((len = unescape(s, e, out)) < 0) return 0;
        ctx->unescaped_len += len;
        text = out;
    }
    uint64_t hash = fnv1a(text, len);
    for (Py_ssize_t i = base; i < ctx->n_keys; i++) {
        const Key *key = &ctx->keys[i];
        if (key->hash == hash && key->len == len && memcmp(key->text, text, len) == 0) return 0;
    }
    if (ctx->n_keys == ctx->capacity) {
        Py_ssize_t capacity = ctx->capacity ? 2 * ctx->capacity : 64;
        Key *grown = PyMem_RawRealloc(ctx->keys, capacity * sizeof(Key));
        if (!grown) {
            ctx->out_of_memory = 1;
            return 0;
        }
        ctx->keys = grown;
        ctx->capacity = capacity;
    }
    ctx->keys[ctx->n_keys++] = (Key){text, len, hash};
    return 1;
}

/* p at a value's first byte; returns just after the value, NULL if it is not valid JSON. */
static const uint8_t *scan_value(const uint8_t *p, const uint8_t *e, int depth, Ctx *ctx) {
    int flag = 0;
    if (p >= e) return NULL;
    switch (*p) {
    case '"':
        return scan_string(p, e, &flag);
    case '{': {
        if (depth >= MAX_DEPTH) return NULL;
        Py_ssize_t base = ctx->n_keys;
        p = skip_ws(p + 1, e);
        if (p < e && *p == '}') return p + 1;
        for (;;) {
            if (p >= e || *p != '"') return NULL;
            const uint8_t *key = p;
            flag = 0;
            if (!(p = scan_string(p, e, &flag)) || !add_key(ctx, base, key, p, flag)) return NULL;
            p = skip_ws(p, e);
            if (p >= e || *p != ':') return NULL;
            p = skip_ws(p + 1, e);
            if (!(p = scan_value(p, e, depth + 1, ctx))) return NULL;
            p = skip_ws(p, e);
            if (p >= e) return NULL;
            if (*p == '}') {
                ctx->n_keys = base;
                return p + 1;
            }
            if (*p != ',') return NULL;
            p = skip_ws(p + 1, e);
        }
    }
    case '[':
        if (depth >= MAX_DEPTH) return NULL;
        p = skip_ws(p + 1, e);
        if (p < e && *p == ']') return p + 1;
        for (;;) {
            if (!(p = scan_value(p, e, depth + 1, ctx))) return NULL;
            p = skip_ws(p, e);
            if (p >= e) return NULL;
            if (*p == ']') return p + 1;
            if (*p != ',') return NULL;
            p = skip_ws(p + 1, e);
        }
    case 't':
        return scan_literal(p, e, "true", 4);
    case 'f':
        return scan_literal(p, e, "false", 5);
    case 'n':
        return scan_literal(p, e, "null", 4);
    case 'N': /* NaN and the infinities: Python's json reads and writes them */
        return scan_literal(p, e, "NaN", 3);
    case 'I':
        return scan_literal(p, e, "Infinity", 8);
    case '-':
        if (e - p > 1 && p[1] == 'I') return scan_literal(p, e, "-Infinity", 9);
        return scan_number(p, e, ctx->max_digits, &flag);
    default:
        return scan_number(p, e, ctx->max_digits, &flag);
    }
}

static int find_field(const Spec *spec, const uint8_t *name, Py_ssize_t len) {
    for (int i = 0; i < spec->n_fields; i++)
        if (spec->fields[i].len == len && memcmp(spec->fields[i].name, name, len) == 0) return i;
    return -1;
}

/* One line [p, e) that is not blank: 1 and the wanted values' spans if it is a JSON object this
 * path can convert, else 0. */
static int scan_row(const uint8_t *p, const uint8_t *e, const Spec *spec, Ctx *ctx, Span *spans) {
    for (int i = 0; i < spec->n_fields; i++) spans[i].type = V_ABSENT;
    p = skip_ws(p, e);
    if (p >= e || *p != '{') return 0;
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}') {
        p++;
    } else {
        for (;;) {
            int escaped = 0, is_int = 0;
            if (p >= e || *p != '"') return 0;
            const uint8_t *key = p + 1;
            if (!(p = scan_string(p, e, &escaped))) return 0;
            if (escaped) return 0; /* an escaped key might spell a wanted one */
            if (!add_key(ctx, 0, key - 1, p, 0)) return 0;
            int field = find_field(spec, key, p - 1 - key);
            p = skip_ws(p, e);
            if (p >= e || *p != ':') return 0;
            p = skip_ws(p + 1, e);
            if (p >= e) return 0;
            const uint8_t *value = p;
            if (field < 0) {
                if (!(p = scan_value(p, e, 1, ctx))) return 0;
            } else {
                Span *span = &spans[field];
                span->escaped = 0;
                if (*p == '"') {
                    span->type = V_STRING;
                    p = scan_string(p, e, &span->escaped);
                } else if ((*p == '-' && !(e - p > 1 && p[1] == 'I')) || is_digit(*p)) {
                    p = scan_number(p, e, ctx->max_digits, &is_int);
                    span->type = is_int ? V_INT : V_OTHER;
                } else if (*p == 'n') {
                    span->type = V_NULL;
                    p = scan_literal(p, e, "null", 4);
                } else {
                    span->type = V_OTHER;
                    p = scan_value(p, e, 1, ctx);
                }
                if (!p) return 0;
                span->start = value;
                span->end = p;
            }
            p = skip_ws(p, e);
            if (p >= e) return 0;
            if (*p == '}') {
                p++;
                break;
            }
            if (*p != ',') return 0;
            p = skip_ws(p + 1, e);
        }
    }
    return skip_ws(p, e) == e;
}

static int parse_int64(const uint8_t *s, const uint8_t *e, int64_t *out) {
    int negative = *s == '-';
    if (negative) s++;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, value = 0;
    for (; s < e; s++) {
        uint64_t digit = *s - '0';
        if (value > (limit - digit) / 10) return 0;
        value = value * 10 + digit;
    }
    *out = negative ? (int64_t)(0 - value) : (int64_t)value;
    return 1;
}

static uint8_t *put_utf8(uint8_t *out, uint32_t cp) {
    if (cp < 0x80) {
        *out++ = (uint8_t)cp;
    } else if (cp < 0x800) {
        *out++ = 0xC0 | (cp >> 6);
        *out++ = 0x80 | (cp & 0x3F);
    } else if (cp < 0x10000) {
        *out++ = 0xE0 | (cp >> 12);
        *out++ = 0x80 | ((cp >> 6) & 0x3F);
        *out++ = 0x80 | (cp & 0x3F);
    } else {
        *out++ = 0xF0 | (cp >> 18);
        *out++ = 0x80 | ((cp >> 12) & 0x3F);
        *out++ = 0x80 | ((cp >> 6) & 0x3F);
        *out++ = 0x80 | (cp & 0x3F);
    }
    return out;
}

static uint32_t hex4(const uint8_t *p) {
    return (uint32_t)(hex_value(p[0]) << 12 | hex_value(p[1]) << 8 | hex_value(p[2]) << 4 |
                      hex_value(p[3]));
}

/* The text of a validated string literal [s, e) (quotes included) as UTF-8 at `out`; returns
 * the bytes written, -1 for a lone surrogate (UTF-8 cannot hold it: the stdlib path decides). */
static Py_ssize_t unescape(const uint8_t *s, const uint8_t *e, uint8_t *out) {
    uint8_t *o = out;
    s++;
    e--;
    while (s < e) {
        if (*s != '\\') {
            *o++ = *s++;
            continue;
        }
        uint8_t c = s[1];
        s += 2;
        switch (c) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp = hex4(s);
            s += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (e - s < 6 || s[0] != '\\' || s[1] != 'u') return -1;
                uint32_t low = hex4(s + 2);
                if (low < 0xDC00 || low > 0xDFFF) return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                s += 6;
            }
            o = put_utf8(o, cp);
            break;
        }
        default: *o++ = c; /* " \ / */
        }
    }
    return o - out;
}

/* The text of a string or integer span at `out` (bytes written), -1 if it has none. */
static Py_ssize_t span_text(const Span *span, uint8_t *out) {
    Py_ssize_t n = span->end - span->start;
    if (span->type == V_INT) {
        if (n == 2 && span->start[0] == '-' && span->start[1] == '0') {
            *out = '0'; /* Python's str(int("-0")) */
            return 1;
        }
        memcpy(out, span->start, n);
        return n;
    }
    if (span->escaped) return unescape(span->start, span->end, out);
    memcpy(out, span->start + 1, n - 2);
    return n - 2;
}

typedef struct {
    Py_ssize_t start, end, line, row;
} Refused;

typedef struct {
    const uint8_t *data;
    Py_ssize_t size;
    Refused *refused;
    Py_ssize_t n_refused, refused_capacity;
    int out_of_memory;
    Py_ssize_t lines, rows, mismatches;
    int64_t *ints[MAX_FIELDS];
    TextColumn texts[MAX_FIELDS];
    uint8_t *scratch; /* a row's task name */
    const uint8_t *example;
    Py_ssize_t example_len;
    Ctx ctx;
} Scan;

static void rollback(Scan *scan, int n_texts, Py_ssize_t row) {
    for (int c = 0; c < n_texts; c++) {
        TextColumn *col = &scan->texts[c];
        col->len = col->o[row];
        col->v[row >> 3] &= (uint8_t) ~(1u << (row & 7));
    }
}

/* Append the row's values to the columns; 0 (and nothing appended) if it cannot be converted. */
static int append_row(Scan *scan, const Spec *spec, const Span *spans) {
    Py_ssize_t row = scan->rows;
    int mismatch = 0;
    for (int f = 0; f < spec->n_fields; f++) {
        const Field *field = &spec->fields[f];
        const Span *span = &spans[f];
        if (field->kind == K_INT) {
            if (span->type != V_INT ||
                !parse_int64(span->start, span->end, &scan->ints[field->column][row])) {
                rollback(scan, spec->n_texts, row);
                return 0;
            }
            continue;
        }
        if (field->kind == K_TASK) {
            if (span->type == V_ABSENT || span->type == V_NULL) continue;
            Py_ssize_t n = span->type == V_STRING ? span_text(span, scan->scratch) : -1;
            if (n < 0) {
                rollback(scan, spec->n_texts, row);
                return 0;
            }
            mismatch = n != spec->expected_len || memcmp(scan->scratch, spec->expected, n) != 0;
            if (mismatch && !scan->example) {
                scan->example = span->start; /* kept as a span: unescaped again at the end */
                scan->example_len = span->end - span->start;
            }
            continue;
        }
        TextColumn *col = &scan->texts[field->column];
        if (span->type != V_ABSENT && span->type != V_NULL) {
            Py_ssize_t n = span->end - span->start;
            if (field->kind == K_JSON) memcpy(col->d + col->len, span->start, n);
            else n = span->type == V_OTHER ? -1 : span_text(span, (uint8_t *)col->d + col->len);
            if (n < 0) {
                rollback(scan, spec->n_texts, row);
                return 0;
            }
            col->len += n;
            col->v[row >> 3] |= (uint8_t)(1u << (row & 7));
        }
        col->o[row + 1] = (int32_t)col->len;
    }
    scan->mismatches += mismatch;
    scan->rows++;
    return 1;
}

static int is_blank(const uint8_t *p, const uint8_t *e) {
    for (; p < e; p++)
        if (!(*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f')) return 0;
    return 1;
}

static int refuse(Scan *scan, Py_ssize_t start, Py_ssize_t end) {
    if (scan->n_refused == scan->refused_capacity) {
        Py_ssize_t capacity = scan->refused_capacity ? 2 * scan->refused_capacity : 64;
        Refused *grown = PyMem_RawRealloc(scan->refused, capacity * sizeof(Refused));
        if (!grown) return 0;
        scan->refused = grown;
        scan->refused_capacity = capacity;
    }
    scan->refused[scan->n_refused++] = (Refused){start, end, scan->lines + 1, scan->rows};
    return 1;
}

/* Every line of the data: rows appended to the columns, refused lines listed. */
static void scan_lines(Scan *scan, const Spec *spec) {
    Span spans[MAX_FIELDS];
    const uint8_t *end = scan->data + scan->size;
    for (const uint8_t *line = scan->data; line < end;) {
        const uint8_t *newline = memchr(line, '\n', end - line);
        const uint8_t *line_end = newline ? newline : end;
        scan->ctx.n_keys = scan->ctx.unescaped_len = 0;
        if (!is_blank(line, line_end) &&
            !(scan_row(line, line_end, spec, &scan->ctx, spans) && append_row(scan, spec, spans)) &&
            !refuse(scan, line - scan->data, line_end - scan->data)) {
            scan->out_of_memory = 1;
            return;
        }
        if (scan->ctx.out_of_memory) {
            scan->out_of_memory = 1;
            return;
        }
        scan->lines++;
        line = newline ? newline + 1 : end;
    }
}

static int add_field(Spec *spec, PyObject *name, int kind, int column) {
    if (spec->n_fields >= MAX_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "too many fields");
        return -1;
    }
    Field *field = &spec->fields[spec->n_fields++];
    field->name = PyUnicode_AsUTF8AndSize(name, &field->len);
    field->kind = kind;
    field->column = column;
    return field->name ? 0 : -1;
}

static int add_fields(Spec *spec, PyObject *names, int kind) {
    if (!PyTuple_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "field names must be a tuple of str");
        return -1;
    }
    int column = kind == K_INT ? 0 : spec->n_texts;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        if (add_field(spec, PyTuple_GET_ITEM(names, i), kind, column++) < 0) return -1;
    }
    if (kind == K_INT) spec->n_ints = column;
    else spec->n_texts = column;
    return 0;
}

/* Python's limit on the digits of an integer it reads from text (0: none), read per call: a
 * program may change it. */
static int int_max_digits(Py_ssize_t *out) {
    PyObject *get = PySys_GetObject("get_int_max_str_digits"); /* borrowed; absent on old Pythons */
    *out = 0;
    if (!get) return 0;
    PyObject *value = PyObject_CallNoArgs(get);
    if (!value) return -1;
    *out = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *new_bytes(Py_ssize_t size, void *data) {
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, size);
    if (bytes) *(char **)data = PyBytes_AS_STRING(bytes);
    return bytes;
}

/* (offsets, data, validity or None, null_count) of a filled column, buffers cut to size. */
static PyObject *text_result(TextColumn *col, Py_ssize_t rows) {
    Py_ssize_t valid = 0;
    for (Py_ssize_t i = 0; i < (rows + 7) / 8; i++) valid += __builtin_popcount(col->v[i]);
    Py_ssize_t nulls = rows - valid;
    if (_PyBytes_Resize(&col->data, col->len) < 0 ||
        _PyBytes_Resize(&col->offsets, (rows + 1) * 4) < 0 ||
        _PyBytes_Resize(&col->validity, (rows + 7) / 8) < 0)
        return NULL;
    return Py_BuildValue("(OOOn)", col->offsets, col->data, nulls ? col->validity : Py_None, nulls);
}

static PyObject *scan_rows(PyObject *self, PyObject *args) {
    Py_buffer buffer;
    PyObject *ints, *texts, *jsons, *task_key, *expected;
    if (!PyArg_ParseTuple(args, "y*OOOOU", &buffer, &ints, &texts, &jsons, &task_key, &expected))
        return NULL;
    PyObject *result = NULL, *int_columns[MAX_FIELDS] = {0}, *int_list = NULL, *text_list = NULL;
    PyObject *example = NULL, *refused = NULL;
    Scan scan = {0};
    Spec spec = {0};
    if (buffer.len >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "scan at most 2 GiB at a time (32-bit Arrow offsets)");
        goto done;
    }
    if (add_fields(&spec, ints, K_INT) < 0 || add_fields(&spec, texts, K_TEXT) < 0 ||
        add_fields(&spec, jsons, K_JSON) < 0)
        goto done;
    if (task_key != Py_None && add_field(&spec, task_key, K_TASK, 0) < 0) goto done;
    if (!(spec.expected = PyUnicode_AsUTF8AndSize(expected, &spec.expected_len))) goto done;
    if (int_max_digits(&scan.ctx.max_digits) < 0) goto done;
    scan.ctx.unescaped_size = buffer.len;

    scan.data = (const uint8_t *)buffer.buf;
    scan.size = buffer.len;
    Py_ssize_t left = buffer.len, max_rows = 1;
    for (const uint8_t *p = scan.data, *e = scan.data + buffer.len;
         (p = memchr(p, '\n', e - p)); p++)
        max_rows++;
    for (int c = 0; c < spec.n_ints; c++)
        if (!(int_columns[c] = new_bytes(max_rows * 8, &scan.ints[c]))) goto done;
    for (int c = 0; c < spec.n_texts; c++) {
        TextColumn *col = &scan.texts[c];
        if (!(col->data = new_bytes(left, &col->d)) ||
            !(col->offsets = new_bytes((max_rows + 1) * 4, &col->o)) ||
            !(col->validity = new_bytes((max_rows + 7) / 8, &col->v)))
            goto done;
        col->o[0] = 0;
        memset(col->v, 0, (max_rows + 7) / 8);
    }
    if (!(scan.scratch = PyMem_Malloc(left + 1))) {
        PyErr_NoMemory();
        goto done;
    }

    Py_BEGIN_ALLOW_THREADS
    scan_lines(&scan, &spec);
    Py_END_ALLOW_THREADS

    if (scan.out_of_memory) {
        PyErr_NoMemory();
        goto done;
    }
    if (!(refused = PyList_New(scan.n_refused))) goto done;
    for (Py_ssize_t i = 0; i < scan.n_refused; i++) {
        Refused *r = &scan.refused[i];
        PyObject *item = Py_BuildValue("(nnnn)", r->start, r->end, r->line, r->row);
        if (!item) goto done;
        PyList_SET_ITEM(refused, i, item);
    }
    if (!(int_list = PyList_New(0)) || !(text_list = PyList_New(0))) goto done;
    for (int c = 0; c < spec.n_ints; c++)
        if (_PyBytes_Resize(&int_columns[c], scan.rows * 8) < 0 ||
            PyList_Append(int_list, int_columns[c]) < 0)
            goto done;
    for (int c = 0; c < spec.n_texts; c++) {
        PyObject *column = text_result(&scan.texts[c], scan.rows);
        int failed = !column || PyList_Append(text_list, column) < 0;
        Py_XDECREF(column);
        if (failed) goto done;
    }
    if (scan.example) {
        Span span = {scan.example, scan.example + scan.example_len, V_STRING, 1};
        Py_ssize_t n = span_text(&span, scan.scratch);
        if (!(example = PyUnicode_DecodeUTF8((const char *)scan.scratch, n, "strict"))) goto done;
    } else {
        example = Py_NewRef(Py_None);
    }
    result = Py_BuildValue("(nnOOnOO)", scan.lines, scan.rows, int_list, text_list,
                           scan.mismatches, example, refused);

done:
    for (int c = 0; c < MAX_FIELDS; c++) {
        Py_XDECREF(int_columns[c]);
        Py_XDECREF(scan.texts[c].data);
        Py_XDECREF(scan.texts[c].offsets);
        Py_XDECREF(scan.texts[c].validity);
    }
    Py_XDECREF(int_list);
    Py_XDECREF(text_list);
    Py_XDECREF(example);
    Py_XDECREF(refused);
    PyMem_Free(scan.scratch);
    PyMem_RawFree(scan.refused);
    PyMem_RawFree(scan.ctx.keys);
    PyMem_RawFree(scan.ctx.unescaped);
    PyBuffer_Release(&buffer);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_rows", scan_rows, METH_VARARGS,
     "scan_rows(data, ints, texts, jsons, task_key, task_name) -> (lines, rows, int_columns, "
     "text_columns, mismatches, example, refused): the rows of every line of data. int_columns "
     "are int64 buffers; text_columns (texts then jsons) are (offsets, data, validity or None, "
     "null_count); refused lists (start, end, line, row) of each line not converted: its bytes, "
     "its 1-based line number, and the number of converted rows before it."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_instance_scan", "Strict JSONL scanning into Arrow column buffers.",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__instance_scan(void) { return PyModuleDef_Init(&module); }
