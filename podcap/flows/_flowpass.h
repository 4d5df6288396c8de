/* The flow passes of _flowpass.c, as _flowpass_module.c calls them. */
#ifndef PODCAP_FLOWPASS_H
#define PODCAP_FLOWPASS_H

#include <stdint.h>

#define EVENTS 16 /* history letters, client and server each: flows.table.EVENTS */

int64_t podcap_assign_flows(int64_t n, const int64_t *file, const int64_t *src, const int64_t *dst,
                            const int32_t *sport, const int32_t *dport, const int16_t *proto,
                            const int8_t *has_ip, const int16_t *flags, const int64_t *seq,
                            int64_t *flow_out, uint8_t *c2s_out);
int64_t podcap_retransmissions(int64_t n, int64_t flows, const int64_t *flow, const uint8_t *c2s,
                               const int16_t *proto, const uint8_t *original,
                               const int32_t *payload, const int16_t *flags, const int64_t *seq,
                               uint8_t *out);
void podcap_flow_sums(int64_t n, int64_t flows, const int64_t *flow, const uint8_t *c2s,
                      const int16_t *proto, const int16_t *flags, const int32_t *payload,
                      const int32_t *length, const int32_t *window, const uint8_t *retransmission,
                      const double *ts, int64_t *first_packet, int64_t *packets,
                      int64_t *packets_c2s, int64_t *bytes_c2s, int64_t *bytes_s2c,
                      int64_t *payload_c2s, int64_t *payload_s2c, int64_t *retransmissions,
                      int64_t *resets, int64_t *zero_windows, double *first_ts, double *last_ts,
                      double *syn_ts, double *synack_ts, double *ack_ts, int64_t *first_event);
void podcap_history_order(int64_t flows, int64_t never, const int64_t *first_event,
                          int64_t *order);

#endif
