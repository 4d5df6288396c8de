/* The Python module podcap.flows._flowpass: the passes of _flowpass.c, each argument checked.

   Every array comes through the buffer protocol (numpy arrays, C-contiguous) and is checked
   against its declared kind (signed integer, bool or float), item size and length before any
   pass runs: a wrong dtype or a short array is a TypeError or ValueError naming the argument,
   never a read past the end. Counts come first: n (packets), then flows where a pass has them.
   podcap/flows/compiled.py gives the arrays their types; this file only checks them. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_flowpass.h"

typedef struct {
    const char *name;
    char kind;     /* 'i' signed integer, '?' bool, 'd' float */
    int itemsize;
    char length;   /* 'n' packets, 'f' flows, 'e' flows * EVENTS */
    int writable;
    int optional;  /* None allowed: the pass gets NULL */
} Arg;

#define MAX_ARGS 26

static int kind_of(const char *format) {
    char last = format ? format[strlen(format) - 1] : 'B';
    if (strchr("bhilq", last)) return 'i';
    return last; /* '?' and 'd' stand for themselves; anything else matches nothing */
}

static void release(Py_buffer *views, int count) {
    for (int k = 0; k < count; k++)
        if (views[k].obj) PyBuffer_Release(&views[k]);
}

/* args[first...] against spec; fills data[] (NULL for an optional None). 0 or -1 (raised). */
static int take(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t first, const Arg *spec,
                int count, int64_t n, int64_t flows, Py_buffer *views, void **data) {
    if (nargs != first + count) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments, got %zd", first + count, nargs);
        return -1;
    }
    memset(views, 0, sizeof(Py_buffer) * count);
    for (int k = 0; k < count; k++) {
        const Arg *a = &spec[k];
        PyObject *obj = args[first + k];
        data[k] = NULL;
        if (obj == Py_None && a->optional) continue;
        int want = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (a->writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(obj, &views[k], want) < 0) goto fail;
        if (views[k].itemsize != a->itemsize || kind_of(views[k].format) != a->kind) {
            PyErr_Format(PyExc_TypeError, "%s: wants %d-byte items of kind '%c', got format '%s'",
                         a->name, a->itemsize, a->kind, views[k].format);
            goto fail;
        }
        int64_t items = a->length == 'n' ? n : a->length == 'f' ? flows : flows * EVENTS;
        if (views[k].len != items * a->itemsize) {
            PyErr_Format(PyExc_ValueError, "%s: wants %lld items, got %zd", a->name,
                         (long long)items, views[k].len / a->itemsize);
            goto fail;
        }
        data[k] = views[k].buf;
    }
    return 0;
fail:
    release(views, count);
    return -1;
}

static int counts(PyObject *const *args, Py_ssize_t nargs, int how_many, int64_t *out) {
    for (int k = 0; k < how_many; k++) {
        if (nargs <= k) return PyErr_SetString(PyExc_TypeError, "missing a count"), -1;
        out[k] = PyLong_AsLongLong(args[k]);
        if (out[k] == -1 && PyErr_Occurred()) return -1;
        if (out[k] < 0) return PyErr_SetString(PyExc_ValueError, "a count is negative"), -1;
    }
    return 0;
}

#define I64(name, length, w) {name, 'i', 8, length, w, 0}
#define I32(name) {name, 'i', 4, 'n', 0, 0}
#define I16(name) {name, 'i', 2, 'n', 0, 0}
#define BOOL(name, length, w) {name, '?', 1, length, w, 0}
#define F64(name, length, w) {name, 'd', 8, length, w, 0}

static const Arg ASSIGN[] = {
    {"file", 'i', 8, 'n', 0, 1}, I64("src", 'n', 0), I64("dst", 'n', 0), I32("sport"),
    I32("dport"), I16("proto"), {"ip_version", 'i', 1, 'n', 0, 0}, I16("flags"),
    I64("seq", 'n', 0), I64("flow_id", 'n', 1), BOOL("c2s", 'n', 1)};

static PyObject *assign_flows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t n;
    Py_buffer views[MAX_ARGS];
    void *d[MAX_ARGS];
    if (counts(args, nargs, 1, &n) < 0 ||
        take(args, nargs, 1, ASSIGN, 11, n, 0, views, d) < 0)
        return NULL;
    int64_t flows = podcap_assign_flows(n, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8],
                                        d[9], d[10]);
    release(views, 11);
    if (flows < 0) return PyErr_NoMemory();
    return PyLong_FromLongLong(flows);
}

static const Arg RETRANSMISSIONS[] = {
    I64("flow", 'n', 0), BOOL("c2s", 'n', 0), I16("proto"), {"original", '?', 1, 'n', 0, 1},
    I32("payload"), I16("flags"), I64("seq", 'n', 0), BOOL("out", 'n', 1)};

static PyObject *retransmissions(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t c[2];
    Py_buffer views[MAX_ARGS];
    void *d[MAX_ARGS];
    if (counts(args, nargs, 2, c) < 0 ||
        take(args, nargs, 2, RETRANSMISSIONS, 8, c[0], c[1], views, d) < 0)
        return NULL;
    int64_t status =
        podcap_retransmissions(c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]);
    release(views, 8);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static const Arg SUMS[] = {
    I64("flow", 'n', 0), BOOL("c2s", 'n', 0), I16("proto"), I16("flags"), I32("payload"),
    I32("length"), I32("window"), BOOL("retransmission", 'n', 0), F64("ts", 'n', 0),
    I64("first_packet", 'f', 1), I64("packets", 'f', 1), I64("packets_c2s", 'f', 1),
    I64("bytes_c2s", 'f', 1), I64("bytes_s2c", 'f', 1), I64("payload_c2s", 'f', 1),
    I64("payload_s2c", 'f', 1), I64("retransmissions", 'f', 1), I64("resets", 'f', 1),
    I64("zero_windows", 'f', 1), F64("first_ts", 'f', 1), F64("last_ts", 'f', 1),
    F64("syn_ts", 'f', 1), F64("synack_ts", 'f', 1), F64("ack_ts", 'f', 1),
    I64("first_event", 'e', 1)};

static PyObject *flow_sums(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t c[2];
    Py_buffer views[MAX_ARGS];
    void *d[MAX_ARGS];
    if (counts(args, nargs, 2, c) < 0 || take(args, nargs, 2, SUMS, 25, c[0], c[1], views, d) < 0)
        return NULL;
    podcap_flow_sums(c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9],
                     d[10], d[11], d[12], d[13], d[14], d[15], d[16], d[17], d[18], d[19],
                     d[20], d[21], d[22], d[23], d[24]);
    release(views, 25);
    Py_RETURN_NONE;
}

static const Arg HISTORY[] = {I64("first_event", 'e', 0), I64("order", 'e', 1)};

static PyObject *history_order(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t c[2]; /* flows, never */
    Py_buffer views[MAX_ARGS];
    void *d[MAX_ARGS];
    if (counts(args, nargs, 2, c) < 0 || take(args, nargs, 2, HISTORY, 2, 0, c[0], views, d) < 0)
        return NULL;
    podcap_history_order(c[0], c[1], d[0], d[1]);
    release(views, 2);
    Py_RETURN_NONE;
}

static PyMethodDef METHODS[] = {
    {"assign_flows", (PyCFunction)(void (*)(void))assign_flows, METH_FASTCALL,
     "assign_flows(n, file, src, dst, sport, dport, proto, ip_version, flags, seq, flow_id, c2s)"
     " -> flows"},
    {"retransmissions", (PyCFunction)(void (*)(void))retransmissions, METH_FASTCALL,
     "retransmissions(n, flows, flow, c2s, proto, original, payload, flags, seq, out)"},
    {"flow_sums", (PyCFunction)(void (*)(void))flow_sums, METH_FASTCALL,
     "flow_sums(n, flows, flow, c2s, proto, flags, payload, length, window, retransmission, ts,"
     " then the 16 per-flow outputs)"},
    {"history_order", (PyCFunction)(void (*)(void))history_order, METH_FASTCALL,
     "history_order(flows, never, first_event, order)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_flowpass",
                                    .m_doc = "podcap's flow passes in C", .m_size = -1,
                                    .m_methods = METHODS};

PyMODINIT_FUNC PyInit__flowpass(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "EVENTS", EVENTS) < 0) Py_CLEAR(m);
    return m;
}
