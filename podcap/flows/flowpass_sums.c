/* The per-flow pass in C: each flow's sums, handshake times, first history events and their
   order, in one loop over the packets.

   podcap/flows/numpy_sums.py computes the same with numpy (one stable sort, reduceat); the
   tests compare both. Arrays come checked by take_arrays (_flowpass.c); flow ids are checked
   against the outputs' length before the loop writes anything. */

#include <math.h>

#include "_flowpass.h"

typedef struct {
    const int64_t *flow_id;
    const uint8_t *c2s, *retransmission;
    const int16_t *proto, *flags;
    const int32_t *payload, *length, *window;
    const double *ts;
    /* out, one per flow id from 0 to the largest (flows.sums.FlowSums says what each is) */
    int64_t *first_packet, *packets, *packets_c2s, *bytes_c2s, *bytes_s2c, *payload_c2s;
    int64_t *payload_s2c, *retransmissions, *resets, *zero_windows;
    double *first_ts, *last_ts, *syn_ts, *synack_ts, *ack_ts;
    int64_t *first_event, *history_order; /* EVENTS per flow */
} Sums;

#define PACKET(field) ARG(Sums, field, PER_PACKET)
#define FLOW(field) ARG(Sums, field, PER_FLOW)

static const Arg SUMS[] = {
    PACKET(flow_id), PACKET(c2s), PACKET(retransmission), PACKET(proto), PACKET(flags),
    PACKET(payload), PACKET(length), PACKET(window), PACKET(ts),
    FLOW(first_packet), FLOW(packets), FLOW(packets_c2s), FLOW(bytes_c2s), FLOW(bytes_s2c),
    FLOW(payload_c2s), FLOW(payload_s2c), FLOW(retransmissions), FLOW(resets),
    FLOW(zero_windows), FLOW(first_ts), FLOW(last_ts), FLOW(syn_ts), FLOW(synack_ts),
    FLOW(ack_ts), ARG(Sums, first_event, PER_FLOW_EVENT),
    ARG(Sums, history_order, PER_FLOW_EVENT)};

/* Which history events (bit k: flows.sums.LETTERS' letter k) a packet shows. */
static unsigned events_of(int tcp, int16_t flags, int32_t payload, int retransmission,
                          int zero_window) {
    int pure = flags & (SYN | ACK);
    return (tcp && pure == SYN) << 0 | (tcp && pure == (SYN | ACK)) << 1 |
           (tcp && (flags & (SYN | FIN | RST | ACK)) == ACK && payload == 0) << 2 |
           (payload > 0) << 3 | (tcp && (flags & FIN)) << 4 | (tcp && (flags & RST)) << 5 |
           (retransmission && payload > 0) << 6 | zero_window << 7;
}

static void start_flows(int64_t n, int64_t flows, const Sums *s) {
    for (int64_t k = 0; k < flows; k++) {
        s->first_packet[k] = n, s->packets[k] = s->packets_c2s[k] = 0;
        s->bytes_c2s[k] = s->bytes_s2c[k] = s->payload_c2s[k] = s->payload_s2c[k] = 0;
        s->retransmissions[k] = s->resets[k] = s->zero_windows[k] = 0;
        s->first_ts[k] = s->last_ts[k] = 0.0;
        s->syn_ts[k] = s->synack_ts[k] = s->ack_ts[k] = HUGE_VAL;
    }
    for (int64_t k = 0; k < flows * EVENTS; k++) s->first_event[k] = n;
}

static void sum_packets(int64_t n, const Sums *s) {
    const int64_t *flow = s->flow_id;
    const uint8_t *c2s = s->c2s, *retransmission = s->retransmission;
    const int16_t *proto = s->proto, *flags = s->flags;
    const int32_t *payload = s->payload, *length = s->length, *window = s->window;
    const double *ts = s->ts;
    int64_t *packets = s->packets, *first_event = s->first_event;
    double *first_ts = s->first_ts, *last_ts = s->last_ts;
    for (int64_t i = 0; i < n; i++) {
        int64_t k = flow[i];
        if (k < 0) continue;
        if (packets[k]++ == 0) s->first_packet[k] = i, first_ts[k] = last_ts[k] = ts[i];
        if (ts[i] < first_ts[k]) first_ts[k] = ts[i];
        if (ts[i] > last_ts[k]) last_ts[k] = ts[i];
        int client = c2s[i] != 0, tcp = proto[i] == TCP, pure = flags[i] & (SYN | ACK);
        s->packets_c2s[k] += client;
        *(client ? &s->bytes_c2s[k] : &s->bytes_s2c[k]) += length[i];
        *(client ? &s->payload_c2s[k] : &s->payload_s2c[k]) += payload[i];
        s->retransmissions[k] += retransmission[i] != 0;
        s->resets[k] += (flags[i] & RST) != 0;
        int zero_window = tcp && window[i] == 0 && !(flags[i] & (SYN | FIN | RST));
        s->zero_windows[k] += zero_window;
        unsigned shown = events_of(tcp, flags[i], payload[i], retransmission[i], zero_window);
        for (int letter = 0; shown; letter++, shown >>= 1) {
            int64_t *first = &first_event[k * EVENTS + 2 * letter + !client];
            if ((shown & 1) && *first == n) *first = i;
        }
        if (tcp && client && pure == SYN && ts[i] < s->syn_ts[k]) s->syn_ts[k] = ts[i];
        if (tcp && !client && pure == (SYN | ACK) && ts[i] < s->synack_ts[k])
            s->synack_ts[k] = ts[i];
    }
    /* Wireshark's iRTT ends at the client's first ACK from the SYN-ACK on. */
    for (int64_t i = 0; i < n; i++) {
        int64_t k = flow[i];
        if (k >= 0 && proto[i] == TCP && c2s[i] && (flags[i] & (SYN | ACK | RST)) == ACK &&
            ts[i] >= s->synack_ts[k] && ts[i] < s->ack_ts[k])
            s->ack_ts[k] = ts[i];
    }
}

/* Each flow's history events in the order they first happened (ties in EVENTS order), then
   EVENTS for the rest of the row: the order flows.table spells. */
static void order_history(int64_t flows, int64_t never, const Sums *s) {
    for (int64_t k = 0; k < flows; k++) {
        const int64_t *at = s->first_event + k * EVENTS;
        int64_t *row = s->history_order + k * EVENTS;
        int count = 0;
        for (int event = 0; event < EVENTS; event++) {
            if (at[event] >= never) continue;
            int slot = count++; /* insertion sort: a row has at most 16 entries */
            while (slot > 0 && at[row[slot - 1]] > at[event]) row[slot] = row[slot - 1], slot--;
            row[slot] = event;
        }
        for (int rest = count; rest < EVENTS; rest++) row[rest] = EVENTS;
    }
}

PyObject *flowpass_flow_sums(PyObject *self, PyObject *args, PyObject *kwargs) {
    Sums arrays;
    Taken taken;
    if (take_arrays("flow_sums", args, kwargs, SUMS, COUNT(SUMS), &arrays, &taken)) return NULL;
    int64_t needed = flow_count(taken.n, arrays.flow_id);
    if (needed > taken.flows) {
        release_arrays(&taken);
        return PyErr_Format(PyExc_ValueError,
                            "flow_sums(): flow_id holds ids up to %lld, the outputs room for %lld",
                            (long long)needed - 1, (long long)taken.flows);
    }
    start_flows(taken.n, taken.flows, &arrays);
    sum_packets(taken.n, &arrays);
    order_history(taken.flows, taken.n, &arrays);
    release_arrays(&taken);
    Py_RETURN_NONE;
}
