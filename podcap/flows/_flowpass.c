/* The flows report's per-packet passes, compiled.

   podcap/flows/__init__.py says what each pass computes, in numpy; these functions compute the
   same, one loop over the packets each instead of a dozen numpy passes and sorts. Python calls
   them through _flowpass_module.c, which checks every argument's type and length first. The
   tests compare both on every sample capture and on generated packet tables.

   Arrays are C-contiguous arrays of the types in _flowpass.h; n is the packet count. Functions
   that allocate return -1 when memory runs out. */

#include "_flowpass.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TCP 6
#define FIN 0x01
#define SYN 0x02
#define RST 0x04
#define ACK 0x10
#define SEQ_MASK 0xFFFFFFFFLL

/* --- conversations, streams, flows -------------------------------------------------------- */

typedef struct {
    const int64_t *file, *src, *dst;
    const int32_t *sport, *dport;
    const int16_t *proto;
} Endpoints;

/* Whether packet i goes from the conversation's lower endpoint to its higher one. */
static int forward(const Endpoints *e, int64_t i) {
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

static Key conversation_key(const Endpoints *e, int64_t i, int fwd) {
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

/* flows.assign_flows' flow_id and c2s. has_ip: ip_version != 0. Returns the flow count. */
int64_t podcap_assign_flows(int64_t n, const int64_t *file, const int64_t *src, const int64_t *dst,
                            const int32_t *sport, const int32_t *dport, const int16_t *proto,
                            const int8_t *has_ip, const int16_t *flags, const int64_t *seq,
                            int64_t *flow_out, uint8_t *c2s_out) {
    Endpoints e = {file, src, dst, sport, dport, proto};
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
        if (!has_ip[i]) {
            flow_out[i] = -1;
            continue;
        }
        fwd[i] = (uint8_t)forward(&e, i);
        Key key = conversation_key(&e, i, fwd[i]);
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
        int32_t a_port = fwd[first] ? sport[first] : dport[first];
        int32_t b_port = fwd[first] ? dport[first] : sport[first];
        int client_is_a = a_port != b_port ? a_port > b_port : fwd[first];
        if (flows[k].first_synack >= 0) client_is_a = !fwd[flows[k].first_synack];
        if (flows[k].first_syn >= 0) client_is_a = fwd[flows[k].first_syn];
        flows[k].first_packet = client_is_a;
    }
    for (int64_t i = 0; i < n; i++)
        c2s_out[i] = flow_out[i] >= 0 && fwd[i] == flows[flow_out[i]].first_packet;
    result = flow_count;
done:
    free(slots), free(fwd), free(conversations), free(flows);
    return result;
}

/* --- retransmissions ----------------------------------------------------------------------- */

/* flows._retransmissions. original: dup_of_frame < 0 (NULL: every packet is one). */
int64_t podcap_retransmissions(int64_t n, int64_t flows, const int64_t *flow, const uint8_t *c2s,
                               const int16_t *proto, const uint8_t *original,
                               const int32_t *payload, const int16_t *flags, const int64_t *seq,
                               uint8_t *out) {
    const int64_t unset = INT64_MIN;
    int64_t *first_seq = malloc((size_t)(2 * flows + 1) * sizeof(int64_t));
    int64_t *highest_end = malloc((size_t)(2 * flows + 1) * sizeof(int64_t));
    if (!first_seq || !highest_end) {
        free(first_seq), free(highest_end);
        return -1;
    }
    for (int64_t d = 0; d < 2 * flows; d++) first_seq[d] = unset, highest_end[d] = -1;
    for (int64_t i = 0; i < n; i++) {
        out[i] = 0;
        if (proto[i] != TCP || flow[i] < 0 || (original && !original[i])) continue;
        int64_t d = 2 * flow[i] + c2s[i];
        if (first_seq[d] == unset) first_seq[d] = seq[i];
        int64_t relative = (seq[i] - first_seq[d]) & SEQ_MASK;
        int syn_fin = (flags[i] & (SYN | FIN)) && !(flags[i] & RST);
        int64_t length = payload[i], before = highest_end[d], end = relative + length + syn_fin;
        int keep_alive = length <= 1 && !syn_fin && relative == before - 1;
        out[i] = (length > 0 || syn_fin) && relative < before && !keep_alive;
        if (end > before) highest_end[d] = end;
    }
    free(first_seq), free(highest_end);
    return 0;
}

/* --- one row per flow ---------------------------------------------------------------------- */

/* Which history events (bit k: flows.EVENTS' letter k, before its side) packet i shows. */
static unsigned events_of(int tcp, int16_t flags, int32_t payload, int retransmission,
                          int zero_window) {
    int pure = flags & (SYN | ACK);
    return (tcp && pure == SYN) << 0 | (tcp && pure == (SYN | ACK)) << 1 |
           (tcp && (flags & (SYN | FIN | RST | ACK)) == ACK && payload == 0) << 2 |
           (payload > 0) << 3 | (tcp && (flags & FIN)) << 4 | (tcp && (flags & RST)) << 5 |
           (retransmission && payload > 0) << 6 | zero_window << 7;
}

void podcap_flow_sums(int64_t n, int64_t flows, const int64_t *flow, const uint8_t *c2s,
                      const int16_t *proto, const int16_t *flags, const int32_t *payload,
                      const int32_t *length, const int32_t *window, const uint8_t *retransmission,
                      const double *ts, int64_t *first_packet, int64_t *packets,
                      int64_t *packets_c2s, int64_t *bytes_c2s, int64_t *bytes_s2c,
                      int64_t *payload_c2s, int64_t *payload_s2c, int64_t *retransmissions,
                      int64_t *resets, int64_t *zero_windows, double *first_ts, double *last_ts,
                      double *syn_ts, double *synack_ts, double *ack_ts, int64_t *first_event) {
    for (int64_t k = 0; k < flows; k++) {
        first_packet[k] = n, packets[k] = packets_c2s[k] = bytes_c2s[k] = bytes_s2c[k] = 0;
        payload_c2s[k] = payload_s2c[k] = retransmissions[k] = resets[k] = zero_windows[k] = 0;
        first_ts[k] = last_ts[k] = 0.0, syn_ts[k] = synack_ts[k] = ack_ts[k] = HUGE_VAL;
    }
    for (int64_t k = 0; k < flows * EVENTS; k++) first_event[k] = n;
    for (int64_t i = 0; i < n; i++) {
        int64_t k = flow[i];
        if (k < 0) continue;
        if (packets[k]++ == 0) first_packet[k] = i, first_ts[k] = last_ts[k] = ts[i];
        if (ts[i] < first_ts[k]) first_ts[k] = ts[i];
        if (ts[i] > last_ts[k]) last_ts[k] = ts[i];
        int client = c2s[i], tcp = proto[i] == TCP, pure = flags[i] & (SYN | ACK);
        packets_c2s[k] += client;
        *(client ? &bytes_c2s[k] : &bytes_s2c[k]) += length[i];
        *(client ? &payload_c2s[k] : &payload_s2c[k]) += payload[i];
        retransmissions[k] += retransmission[i];
        resets[k] += (flags[i] & RST) != 0;
        int zero_window = tcp && window[i] == 0 && !(flags[i] & (SYN | FIN | RST));
        zero_windows[k] += zero_window;
        unsigned shown = events_of(tcp, flags[i], payload[i], retransmission[i], zero_window);
        for (int letter = 0; shown; letter++, shown >>= 1) {
            int64_t *first = &first_event[k * EVENTS + 2 * letter + !client];
            if ((shown & 1) && *first == n) *first = i;
        }
        if (tcp && client && pure == SYN && ts[i] < syn_ts[k]) syn_ts[k] = ts[i];
        if (tcp && !client && pure == (SYN | ACK) && ts[i] < synack_ts[k]) synack_ts[k] = ts[i];
    }
    /* Wireshark's iRTT ends at the client's first ACK from the SYN-ACK on. */
    for (int64_t i = 0; i < n; i++) {
        int64_t k = flow[i];
        if (k >= 0 && proto[i] == TCP && c2s[i] && (flags[i] & (SYN | ACK | RST)) == ACK &&
            ts[i] >= synack_ts[k] && ts[i] < ack_ts[k])
            ack_ts[k] = ts[i];
    }
}

/* Each flow's history events in the order they first happened (ties in EVENTS order), then
   EVENTS for the rest of the row: flows._history's spelling. */
void podcap_history_order(int64_t flows, int64_t never, const int64_t *first_event,
                          int64_t *order) {
    for (int64_t k = 0; k < flows; k++) {
        const int64_t *at = first_event + k * EVENTS;
        int64_t *row = order + k * EVENTS;
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
