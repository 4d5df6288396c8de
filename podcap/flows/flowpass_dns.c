/* DNS messages' fields in one loop per message: what podcap/decode/dns.py reads with numpy
   (read_dns's reference code), the same fields and the same faults, without its dozen passes
   over every message.

   Per message: the header; the question's name walked label by label (its end, whether it is
   broken, a 64-bit hash of its bytes so that Python spells each distinct name once); the
   question's type and class; and, in a response, where the first A or AAAA record's address
   is among the first MAX_ANSWERS answers. Reads past the end of the buffer see zero bytes,
   as the numpy ByteView does; a name or record running past its message's end is a fault. */

#include "_flowpass.h"

#define HEADER 12
#define MAX_LABELS 128
#define MAX_ANSWERS 8
#define MAX_NAME 255
#define TYPE_A 1
#define TYPE_AAAA 28

typedef struct {
    const int64_t *start, *end;
    int64_t *ident, *flags, *questions, *answers, *name_end, *qtype, *qclass, *name_hash;
    int64_t *address_at, *address_size;
    uint8_t *malformed, *asked;
} DnsArrays;

static const Arg DNS_SPEC[] = {
    ARG(DnsArrays, start, PER_PACKET),        ARG(DnsArrays, end, PER_PACKET),
    ARG(DnsArrays, ident, PER_PACKET),        ARG(DnsArrays, flags, PER_PACKET),
    ARG(DnsArrays, questions, PER_PACKET),    ARG(DnsArrays, answers, PER_PACKET),
    ARG(DnsArrays, name_end, PER_PACKET),     ARG(DnsArrays, qtype, PER_PACKET),
    ARG(DnsArrays, qclass, PER_PACKET),       ARG(DnsArrays, name_hash, PER_PACKET),
    ARG(DnsArrays, address_at, PER_PACKET),   ARG(DnsArrays, address_size, PER_PACKET),
    ARG(DnsArrays, malformed, PER_PACKET),    ARG(DnsArrays, asked, PER_PACKET),
};

typedef struct {
    const uint8_t *bytes;
    int64_t size;
} Bytes;

static inline int64_t u8(Bytes b, int64_t at) {
    return at >= 0 && at < b.size ? b.bytes[at] : 0;
}

static inline int64_t u16(Bytes b, int64_t at) { return u8(b, at) << 8 | u8(b, at + 1); }

/* The offset after the name at `at` (labels ending with a zero length or a compression
   pointer); *bad when it runs past `end`, has a label of a reserved kind, or has more than
   MAX_LABELS labels. */
static int64_t skip_name(Bytes b, int64_t at, int64_t end, int *bad) {
    int64_t pos = at;
    *bad = 1;
    if (at >= end) return pos;
    for (int k = 0; k < MAX_LABELS; k++) {
        int64_t length = u8(b, pos);
        int pointer = (length & 0xC0) == 0xC0;
        pos += pointer ? 2 : length + 1;
        if (((length & 0xC0) && !pointer) || pos > end) return pos;
        if (length == 0 || pointer) {
            *bad = 0;
            return pos;
        }
    }
    return pos;
}

/* FNV-1a over the name's bytes, its length mixed in: equal names, equal hashes. */
static int64_t name_hash(Bytes b, int64_t at, int64_t stop) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int64_t pos = at; pos < stop; pos++) h = (h ^ (uint64_t)u8(b, pos)) * 0x100000001b3ULL;
    h ^= (uint64_t)(stop - at) * 0x9E3779B97F4A7C15ULL;
    return (int64_t)h;
}

/* Where the first A (4 bytes) or AAAA (16 bytes) address is among a response's answers. */
static void first_address(Bytes b, int64_t at, int64_t end, int64_t answers, int64_t *where,
                          int64_t *size) {
    *where = -1, *size = 0;
    int64_t pos = at;
    for (int64_t nth = 0; nth < MAX_ANSWERS && nth < answers; nth++) {
        int bad;
        int64_t after = skip_name(b, pos, end, &bad);
        int64_t kind = u16(b, after), length = u16(b, after + 8), data = after + 10;
        if (bad || data + length > end) return;
        if ((kind == TYPE_A && length == 4) || (kind == TYPE_AAAA && length == 16)) {
            *where = data, *size = length;
            return;
        }
        pos = data + length;
    }
}

static void read_one(Bytes b, const DnsArrays *a, int64_t i) {
    int64_t s = a->start[i], e = a->end[i];
    int64_t flags = u16(b, s + 2), questions = u16(b, s + 4), answers = u16(b, s + 6);
    a->ident[i] = u16(b, s), a->flags[i] = flags;
    a->questions[i] = questions, a->answers[i] = answers;
    int malformed = s + HEADER > e;
    int asked = questions > 0 && !malformed, bad;
    int64_t name_end = skip_name(b, asked ? s + HEADER : e, e, &bad);
    malformed |= asked && (bad || name_end + 4 > e);
    asked = asked && !malformed;
    a->malformed[i] = (uint8_t)malformed, a->asked[i] = (uint8_t)asked;
    a->name_end[i] = name_end;
    a->qtype[i] = asked ? u16(b, name_end) : -1;
    a->qclass[i] = asked ? u16(b, name_end + 2) : -1;
    int spelled = asked && name_end - (s + HEADER) <= MAX_NAME;
    a->name_hash[i] = spelled ? name_hash(b, s + HEADER, name_end) : 0;
    int64_t response_answers = (flags >> 15) == 1 ? answers : 0;
    first_address(b, asked ? name_end + 4 : s + HEADER, e, response_answers, &a->address_at[i],
                  &a->address_size[i]);
}

PyObject *flowpass_dns_fields(PyObject *self, PyObject *args, PyObject *kwargs) {
    static const char *const function = "dns_fields";
    PyObject *buffer = kwargs ? PyDict_GetItemString(kwargs, "buffer") : NULL;
    if (!buffer) {
        PyErr_Format(PyExc_TypeError, "%s(): missing argument 'buffer'", function);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *arrays = PyDict_Copy(kwargs);
    if (!arrays || PyDict_DelItemString(arrays, "buffer") < 0) {
        Py_XDECREF(arrays);
        PyBuffer_Release(&view);
        return NULL;
    }
    DnsArrays a;
    Taken taken;
    int failed = take_arrays(function, args, arrays, DNS_SPEC, COUNT(DNS_SPEC), &a, &taken);
    Py_DECREF(arrays);
    if (failed < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Bytes b = {(const uint8_t *)view.buf, (int64_t)view.len};
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < taken.n; i++) read_one(b, &a, i);
    Py_END_ALLOW_THREADS
    release_arrays(&taken);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}
