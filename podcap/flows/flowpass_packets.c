/* The per-packet flow passes in C: flow ids (tcp.stream's port-reuse split), client sides,
   retransmissions.

   podcap/flows/numpy_packets.py computes the same with numpy; these do it in one loop over the
   packets each, with a hash table of conversations. The tests compare both on every sample
   capture and on generated packet tables. Arrays come checked by take_arrays (_flowpass.c). */

#include <stdlib.h>

#include "_flowpass.h"

/* --- conversations, streams, flows -------------------------------------------------------- */

typedef struct {
    int64_t *flow_id;                 /* out: flow per packet, -1 without an IP header */
    uint8_t *c2s;                     /* out: sent by the client */
    const int64_t *file, *src, *dst;  /* integer codes (file: NULL for one file) */
    const int32_t *sport, *dport;
    const int16_t *proto, *flags;
    const int8_t *ip_version;
    const int64_t *seq;
} FlowIds;

static const Arg FLOW_IDS[] = {
    ARG(FlowIds, flow_id, PER_PACKET), ARG(FlowIds, c2s, PER_PACKET),
    OPTIONAL_ARG(FlowIds, file, PER_PACKET), ARG(FlowIds, src, PER_PACKET),
    ARG(FlowIds, dst, PER_PACKET), ARG(FlowIds, sport, PER_PACKET),
    ARG(FlowIds, dport, PER_PACKET), ARG(FlowIds, proto, PER_PACKET),
    ARG(FlowIds, flags, PER_PACKET), ARG(FlowIds, ip_version, PER_PACKET),
    ARG(FlowIds, seq, PER_PACKET)};

/* Whether packet i goes from the conversation's lower endpoint to its higher one. */
static int forward(const FlowIds *e, int64_t i) {
    return e->src[i] < e->dst[i] || (e->src[i] == e->dst[i] && e->sport[i] <= e->dport[i]);
}

static uint64_t mix(uint64_t h) { /* splitmix64's finaliser */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

typedef struct { /* a conversation: its lower and higher endpoint, protocol and file */
    int64_t low, high, file;
    int32_t low_port, high_port, proto;
} Key;

static Key conversation_key(const FlowIds *e, int64_t i, int fwd) {
    Key k = {fwd ? e->src[i] : e->dst[i], fwd ? e->dst[i] : e->src[i], e->file ? e->file[i] : 0,
             fwd ? e->sport[i] : e->dport[i], fwd ? e->dport[i] : e->sport[i],
             e->proto[i] & 0xFF};
    return k;
}

static uint64_t key_hash(const Key *k) {
    uint64_t ports = (uint64_t)(uint32_t)k->low_port << 32 | (uint32_t)k->high_port;
    uint64_t h = mix((uint64_t)k->low * 0x9e3779b97f4a7c15ULL ^ ports);
    h = mix(h ^ (uint64_t)k->high * 0xc2b2ae3d27d4eb4fULL);
    return mix(h ^ (uint64_t)k->file << 8 ^ (uint64_t)k->proto);
}

static int same_key(const Key *a, const Key *b) {
    return a->low == b->low && a->high == b->high && a->low_port == b->low_port &&
           a->high_port == b->high_port && a->proto == b->proto && a->file == b->file;
}

typedef struct { /* a hash table slot: the hash's upper half, and conversation + 1 (0: free) */
    uint32_t tag, conversation;
} Slot;

typedef struct { /* a conversation: one cache line */
    Key key;
    int64_t flow;               /* its current flow (stream) */
    int64_t direction_first[2]; /* each direction's first TCP packet since the stream began */
} Conversation;

typedef struct {
    int64_t first_packet, first_syn, first_synack;
} Flow;

/* Room for one more item in a growing array; -1 when memory runs out. */
static int make_room(void **items, size_t item_size, int64_t count, int64_t *size) {
    if (count < *size) return 0;
    int64_t new_size = *size ? *size * 2 : 1024;
    void *bigger = realloc(*items, (size_t)new_size * item_size);
    if (!bigger) return -1;
    *items = bigger, *size = new_size;
    return 0;
}

/* The table twice as large, with every conversation put back; NULL when memory runs out. */
static Slot *rehash(Slot *slots, int64_t *capacity, const Conversation *conversations,
                    int64_t count) {
    int64_t bigger = *capacity * 2;
    Slot *table = calloc((size_t)bigger, sizeof(Slot));
    free(slots);
    if (!table) return NULL;
    for (int64_t conv = 0; conv < count; conv++) {
        uint64_t hash = key_hash(&conversations[conv].key), at = hash & (uint64_t)(bigger - 1);
        while (table[at].conversation) at = (at + 1) & (uint64_t)(bigger - 1);
        table[at].tag = (uint32_t)(hash >> 32), table[at].conversation = (uint32_t)(conv + 1);
    }
    *capacity = bigger;
    return table;
}

/* Wireshark's base_seq: the sequence number a direction starts from. */
static int64_t base_seq(const int16_t *flags, const int64_t *seq, int64_t i) {
    return (flags[i] & SYN) ? seq[i] : (seq[i] - 1) & SEQ_MASK;
}

/* Fills flow_id and c2s; returns the flow count, -1 when memory runs out. */
static int64_t assign_flows(int64_t n, const FlowIds *e) {
    const int16_t *proto = e->proto, *flags = e->flags;
    const int64_t *seq = e->seq;
    int64_t *flow_out = e->flow_id;
    Conversation *conversations = NULL;
    Flow *flows = NULL;
    int64_t conversation_count = 0, conversations_size = 0, flow_count = 0, flows_size = 0;
    int64_t result = -1, capacity = 1 << 12;
    Slot *slots = calloc((size_t)capacity, sizeof(Slot));
    uint8_t *fwd = malloc((size_t)(n ? n : 1));
    if (!slots || !fwd) goto done;

#define NEW_FLOW(packet)                                                                     \
    do {                                                                                     \
        if (make_room((void **)&flows, sizeof(Flow), flow_count, &flows_size)) goto done;    \
        flows[flow_count] = (Flow){packet, -1, -1};                                          \
        c->flow = flow_count++;                                                              \
    } while (0)

    for (int64_t i = 0; i < n; i++) {
        if (!e->ip_version[i]) {
            flow_out[i] = -1;
            continue;
        }
        fwd[i] = (uint8_t)forward(e, i);
        Key key = conversation_key(e, i, fwd[i]);
        uint64_t hash = key_hash(&key), at = hash & (uint64_t)(capacity - 1);
        uint32_t tag = (uint32_t)(hash >> 32);
        while (slots[at].conversation &&
               (slots[at].tag != tag ||
                !same_key(&key, &conversations[slots[at].conversation - 1].key)))
            at = (at + 1) & (uint64_t)(capacity - 1);
        Conversation *c;
        if (slots[at].conversation) {
            c = &conversations[slots[at].conversation - 1];
        } else {
            if (make_room((void **)&conversations, sizeof(Conversation), conversation_count,
                          &conversations_size))
                goto done;
            c = &conversations[conversation_count++];
            *c = (Conversation){key, 0, {-1, -1}};
            NEW_FLOW(i);
            slots[at].tag = tag, slots[at].conversation = (uint32_t)conversation_count;
            /* At most half full: the table stays as small (in cache) as the conversations. */
            if (2 * conversation_count > capacity &&
                !(slots = rehash(slots, &capacity, conversations, conversation_count)))
                goto done;
        }
        int tcp = proto[i] == TCP, pure = flags[i] & (SYN | ACK);
        if (tcp) {
            /* Port reuse: a pure SYN whose sequence number is not its direction's base (since
               the stream began) starts a new stream, as tcp.stream does. */
            int64_t *first = &c->direction_first[fwd[i]];
            if (*first < 0) {
                *first = i;
            } else if (pure == SYN && seq[i] != base_seq(flags, seq, *first)) {
                NEW_FLOW(i);
                c->direction_first[0] = c->direction_first[1] = -1;
                c->direction_first[fwd[i]] = i;
            }
        }
        Flow *flow = &flows[flow_out[i] = c->flow];
        if (tcp && pure == SYN && flow->first_syn < 0) flow->first_syn = i;
        if (tcp && pure == (SYN | ACK) && flow->first_synack < 0) flow->first_synack = i;
    }
#undef NEW_FLOW
    /* The client: sends the first SYN; else receives the first SYN-ACK; else has the higher
       port; else sent the first packet. Kept per flow in first_packet's place. */
    for (int64_t k = 0; k < flow_count; k++) {
        int64_t first = flows[k].first_packet;
        int32_t a_port = fwd[first] ? e->sport[first] : e->dport[first];
        int32_t b_port = fwd[first] ? e->dport[first] : e->sport[first];
        int client_is_a = a_port != b_port ? a_port > b_port : fwd[first];
        if (flows[k].first_synack >= 0) client_is_a = !fwd[flows[k].first_synack];
        if (flows[k].first_syn >= 0) client_is_a = fwd[flows[k].first_syn];
        flows[k].first_packet = client_is_a;
    }
    uint8_t *c2s_out = e->c2s;
    for (int64_t i = 0; i < n; i++)
        c2s_out[i] = flow_out[i] >= 0 && fwd[i] == flows[flow_out[i]].first_packet;
    result = flow_count;
done:
    free(slots), free(fwd), free(conversations), free(flows);
    return result;
}

PyObject *flowpass_assign_flows(PyObject *self, PyObject *args, PyObject *kwargs) {
    FlowIds arrays;
    Taken taken;
    if (take_arrays("assign_flows", args, kwargs, FLOW_IDS, COUNT(FLOW_IDS), &arrays, &taken))
        return NULL;
    int64_t flows = assign_flows(taken.n, &arrays);
    release_arrays(&taken);
    return flows < 0 ? PyErr_NoMemory() : PyLong_FromLongLong(flows);
}

/* --- retransmissions ----------------------------------------------------------------------- */

typedef struct {
    uint8_t *out;                      /* out: a retransmission */
    const int64_t *flow_id, *seq;
    const uint8_t *c2s, *original;     /* original: not another interface's copy */
    const int16_t *proto, *flags;
    const int32_t *payload;
} Retransmissions;

static const Arg RETRANSMISSIONS[] = {
    ARG(Retransmissions, out, PER_PACKET), ARG(Retransmissions, flow_id, PER_PACKET),
    ARG(Retransmissions, seq, PER_PACKET), ARG(Retransmissions, c2s, PER_PACKET),
    ARG(Retransmissions, original, PER_PACKET),
    ARG(Retransmissions, proto, PER_PACKET), ARG(Retransmissions, flags, PER_PACKET),
    ARG(Retransmissions, payload, PER_PACKET)};

/* A segment carrying data, SYN or FIN that starts before the highest sequence number already
   sent in its direction (keep-alives excepted). 0, or -1 when memory runs out. */
static int retransmissions(int64_t n, int64_t flows, const Retransmissions *r) {
    const int64_t unset = INT64_MIN, *flow = r->flow_id, *seq = r->seq;
    const int16_t *flags = r->flags;
    uint8_t *out = r->out;
    int64_t *first_seq = malloc((size_t)(2 * flows + 1) * sizeof(int64_t));
    int64_t *highest_end = malloc((size_t)(2 * flows + 1) * sizeof(int64_t));
    if (!first_seq || !highest_end) {
        free(first_seq), free(highest_end);
        return -1;
    }
    for (int64_t d = 0; d < 2 * flows; d++) first_seq[d] = unset, highest_end[d] = -1;
    for (int64_t i = 0; i < n; i++) {
        out[i] = 0;
        if (r->proto[i] != TCP || flow[i] < 0 || !r->original[i]) continue;
        int64_t d = 2 * flow[i] + (r->c2s[i] != 0);
        if (first_seq[d] == unset) first_seq[d] = seq[i];
        int64_t relative = (seq[i] - first_seq[d]) & SEQ_MASK;
        int syn_fin = (flags[i] & (SYN | FIN)) && !(flags[i] & RST);
        int64_t length = r->payload[i], before = highest_end[d];
        int64_t end = relative + length + syn_fin;
        int keep_alive = length <= 1 && !syn_fin && relative == before - 1;
        out[i] = (length > 0 || syn_fin) && relative < before && !keep_alive;
        if (end > before) highest_end[d] = end;
    }
    free(first_seq), free(highest_end);
    return 0;
}

PyObject *flowpass_retransmissions(PyObject *self, PyObject *args, PyObject *kwargs) {
    Retransmissions arrays;
    Taken taken;
    if (take_arrays("retransmissions", args, kwargs, RETRANSMISSIONS, COUNT(RETRANSMISSIONS),
                    &arrays, &taken))
        return NULL;
    int status = retransmissions(taken.n, flow_count(taken.n, arrays.flow_id), &arrays);
    release_arrays(&taken);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}
