/* The Python module podcap.flows._flowpass: the flow passes, each argument checked first.

   The passes are in flowpass_packets.c (flow ids, client sides, retransmissions) and
   flowpass_sums.c (one row per flow); podcap/flows/compiled.py calls them. Every array is
   passed by name and comes through the buffer protocol; before a pass runs, each one is checked
   against its field in the pass's struct (item size, kind: signed integer, bool or float64,
   writable for an output, C-contiguous) and its length against the others' (one per packet,
   one per flow, EVENTS per flow). A mismatch raises TypeError or ValueError naming the array;
   nothing is read or written past an end. The counts come from the lengths, never from the
   caller. */

#include "_flowpass.h"

#include <string.h>

/* A readable name for what an Arg wants: int64, bool, float64. */
static const char *type_name(const Arg *a) {
    static char name[16];
    if (a->kind == '?') return "bool";
    snprintf(name, sizeof name, "%s%d", a->kind == 'd' ? "float" : "int", 8 * a->itemsize);
    return name;
}

/* The kind of a buffer's struct-module format ('i', '?', 'd'), 0 for any other or for a byte
   order that is not this machine's. */
static char kind_of(const char *format) {
    if (!format) return 0; /* plain bytes */
    const int little = *(const unsigned char *)&(uint16_t){1};
    if (*format == '@' || *format == '=' || *format == (little ? '<' : '>')) format++;
    if (strlen(format) != 1) return 0;
    if (strchr("bhilq", *format)) return 'i';
    return strchr("?d", *format) ? *format : 0;
}

static int missing_or_unexpected(const char *function, PyObject *kwargs, const Arg *spec,
                                 int count) {
    for (int k = 0; k < count; k++)
        if (!kwargs || !PyDict_GetItemString(kwargs, spec[k].name)) {
            PyErr_Format(PyExc_TypeError, "%s(): missing argument '%s'", function, spec[k].name);
            return -1;
        }
    PyObject *key, *value;
    Py_ssize_t at = 0;
    while (PyDict_Next(kwargs, &at, &key, &value)) {
        int known = 0;
        for (int k = 0; k < count && !known; k++)
            known = PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(key, spec[k].name) == 0;
        if (!known) {
            PyErr_Format(PyExc_TypeError, "%s(): unexpected argument %R", function, key);
            return -1;
        }
    }
    return 0;
}

/* Checks one buffer's length against the count its Arg's length names (the first array of a
   kind sets the count). 0, or -1 with ValueError raised. */
static int check_length(const char *function, const Arg *a, int64_t items, Taken *taken) {
    int64_t *count = a->length == PER_PACKET ? &taken->n : &taken->flows;
    int64_t per = a->length == PER_FLOW_EVENT ? EVENTS : 1;
    if (*count < 0) {
        if (items % per) {
            PyErr_Format(PyExc_ValueError, "%s(): %s: wants a multiple of %d items, got %lld",
                         function, a->name, EVENTS, (long long)items);
            return -1;
        }
        *count = items / per;
    }
    if (items != *count * per) {
        PyErr_Format(PyExc_ValueError, "%s(): %s: wants %lld items, got %lld", function, a->name,
                     (long long)(*count * per), (long long)items);
        return -1;
    }
    return 0;
}

static int take_one(const char *function, const Arg *a, PyObject *obj, void *into,
                    Taken *taken) {
    void *pointer = NULL;
    if (obj != Py_None || !a->optional) {
        Py_buffer *view = &taken->views[taken->count];
        int want = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (a->writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(obj, view, want) < 0) {
            PyErr_Format(PyExc_TypeError, "%s(): %s must be a C-contiguous%s %s array, not %.100s",
                         function, a->name, a->writable ? " writable" : "", type_name(a),
                         Py_TYPE(obj)->tp_name);
            return -1;
        }
        taken->count++;
        if (view->itemsize != a->itemsize || kind_of(view->format) != a->kind) {
            PyErr_Format(PyExc_TypeError, "%s(): %s must hold %s items, got format '%s' (%zd bytes)",
                         function, a->name, type_name(a), view->format ? view->format : "B",
                         view->itemsize);
            return -1;
        }
        if (check_length(function, a, view->len / view->itemsize, taken) < 0) return -1;
        pointer = view->buf;
    }
    memcpy((char *)into + a->offset, &pointer, sizeof pointer);
    return 0;
}

int take_arrays(const char *function, PyObject *args, PyObject *kwargs, const Arg *spec,
                int count, void *into, Taken *taken) {
    taken->count = 0, taken->n = -1, taken->flows = -1;
    if (args && PyTuple_GET_SIZE(args)) {
        PyErr_Format(PyExc_TypeError, "%s() takes its arrays by name only", function);
        return -1;
    }
    if (missing_or_unexpected(function, kwargs, spec, count) < 0) return -1;
    for (int k = 0; k < count; k++)
        if (take_one(function, &spec[k], PyDict_GetItemString(kwargs, spec[k].name), into,
                     taken) < 0) {
            release_arrays(taken);
            return -1;
        }
    return 0;
}

void release_arrays(Taken *taken) {
    for (int k = 0; k < taken->count; k++) PyBuffer_Release(&taken->views[k]);
    taken->count = 0;
}

int64_t flow_count(int64_t n, const int64_t *flow) {
    int64_t largest = -1;
    for (int64_t i = 0; i < n; i++)
        if (flow[i] > largest) largest = flow[i];
    return largest + 1;
}

#define FUNCTION(name, doc)                                                                  \
    {#name, (PyCFunction)(void (*)(void))flowpass_##name, METH_VARARGS | METH_KEYWORDS, doc}

static PyMethodDef METHODS[] = {
    FUNCTION(assign_flows, "flow_id and c2s per packet; returns the flow count "
                           "(flows.numpy_packets.flow_ids computes the same)."),
    FUNCTION(retransmissions, "out: whether each packet is a retransmission "
                              "(flows.numpy_packets.retransmissions)."),
    FUNCTION(flow_sums, "Per-flow sums, times, first events and history order "
                        "(flows.numpy_sums.flow_sums)."),
    FUNCTION(dns_fields, "DNS messages' header, question and first address in buffer "
                         "(decode.dns.read_dns's numpy code reads the same)."),
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_flowpass",
                                    .m_doc = "podcap's flow passes in C, arguments checked.",
                                    .m_size = -1, .m_methods = METHODS};

PyMODINIT_FUNC PyInit__flowpass(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "EVENTS", EVENTS) < 0) Py_CLEAR(m);
    return m;
}
