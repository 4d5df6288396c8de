/* What the C files of podcap.flows._flowpass share: packet constants and the argument checks.

   Each pass takes its arrays in one struct of pointers. An Arg (made by ARG from the struct's
   field, so that its item size, kind and writability come from the field's C type) says how
   the Python caller's array for that field is checked before the pass runs. */

#ifndef PODCAP_FLOWPASS_H
#define PODCAP_FLOWPASS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

#define TCP 6
#define FIN 0x01
#define SYN 0x02
#define RST 0x04
#define ACK 0x10
#define SEQ_MASK 0xFFFFFFFFLL
#define EVENTS 16 /* history events per flow, client and server each: flows.sums.EVENTS */

/* How many items an array holds. */
enum { PER_PACKET = 'n', PER_FLOW = 'f', PER_FLOW_EVENT = 'e' /* EVENTS per flow */ };

typedef struct {
    const char *name;
    size_t offset; /* of the field in the pass's struct */
    int itemsize;
    char kind;     /* 'i' signed integer, '?' bool (uint8_t), 'd' float64 */
    int writable;  /* an output: the field is not a pointer to const */
    char length;   /* PER_PACKET, PER_FLOW or PER_FLOW_EVENT */
    int optional;  /* None allowed: the field stays NULL */
} Arg;

#define KIND_OF(x)                                                                           \
    _Generic((x), int64_t: 'i', int32_t: 'i', int16_t: 'i', int8_t: 'i', uint8_t: '?',      \
             double: 'd')
#define WRITABLE(p)                                                                          \
    _Generic((p), const int64_t *: 0, const int32_t *: 0, const int16_t *: 0,               \
             const int8_t *: 0, const uint8_t *: 0, const double *: 0, default: 1)
#define FIELD(Struct, field) (((Struct *)0)->field)
#define ARG_(Struct, field, length, optional)                                                \
    {#field, offsetof(Struct, field), sizeof(*FIELD(Struct, field)),                       \
     KIND_OF(*FIELD(Struct, field)), WRITABLE(FIELD(Struct, field)), length, optional}
#define ARG(Struct, field, length) ARG_(Struct, field, length, 0)
#define OPTIONAL_ARG(Struct, field, length) ARG_(Struct, field, length, 1)
#define COUNT(spec) ((int)(sizeof(spec) / sizeof((spec)[0])))
#define MAX_ARRAYS 32

/* The arrays a call took, to release, and the counts their lengths gave. */
typedef struct {
    Py_buffer views[MAX_ARRAYS];
    int count;
    int64_t n;     /* packets */
    int64_t flows; /* -1 when the pass has no per-flow array */
} Taken;

/* Checks kwargs against spec (every array by name, nothing else) and stores each buffer's
   pointer in the struct at `into`. 0, or -1 with TypeError/ValueError raised. */
int take_arrays(const char *function, PyObject *args, PyObject *kwargs, const Arg *spec,
                int count, void *into, Taken *taken);
void release_arrays(Taken *taken);
/* The largest flow id + 1 (flow ids below 0 stand for packets outside any flow). */
int64_t flow_count(int64_t n, const int64_t *flow);

/* The module's functions (flowpass_packets.c, flowpass_sums.c). */
PyObject *flowpass_assign_flows(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *flowpass_retransmissions(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *flowpass_flow_sums(PyObject *self, PyObject *args, PyObject *kwargs);
/* flowpass_dns.c: DNS messages' fields, one loop per message (decode.dns.read_dns). */
PyObject *flowpass_dns_fields(PyObject *self, PyObject *args, PyObject *kwargs);

#endif
