/* bp_trace.h - W3C Trace Context: the traceparent header a POST may carry, kept in the Kafka message
 * (header "traceparent"), logged by the worker and shown on receipts. No exporter: only the id travels. */
#ifndef BP_TRACE_H
#define BP_TRACE_H

#include <stddef.h>

/* Length of a version-00 traceparent ("00-<32 hex>-<16 hex>-<2 hex>"), without a NUL. */
#define BP_TRACEPARENT_LEN 55

/* Whether s[0..len) is a traceparent as W3C Trace Context level 1 defines it: lowercase hex fields
 * version-trace_id-parent_id-flags, version not "ff", trace_id and parent_id not all zeros; version 00
 * exactly 55 characters, a later version at least 55 with '-' after the flags when longer (a receiver
 * must accept what a newer sender appends). 1 valid, 0 not. */
int bp_traceparent_valid(const char *s, size_t len);

#endif
