/* bp_metrics.h - a small Prometheus registry: counters, gauges and histograms with fixed label sets,
 * updated lock-free from any thread and rendered in the text exposition format (version 0.0.4). */
#ifndef BP_METRICS_H
#define BP_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct bp_metrics bp_metrics_t;
typedef struct bp_metric bp_metric_t;

/* Callback of a computed gauge: returns the value now. Called from the rendering thread. */
typedef double (*bp_gauge_fn)(void *arg);

/* Series a registry holds at most (a histogram counts as one). Beyond it a new series is not created:
 * the find-or-create functions return NULL (updates of NULL are no-ops) and the counter
 * bp_metrics_series_dropped_total counts the refusals. Label values must come from small fixed sets
 * (see bp_metrics_method_label); the cap is the last line of defence, not the design. */
#define BP_METRICS_MAX_SERIES 4096

/* A new registry holding only bp_metrics_series_dropped_total. Free with bp_metrics_free. */
bp_metrics_t *bp_metrics_new(void);

/* Free the registry and every metric in it. Accepts NULL. */
void bp_metrics_free(bp_metrics_t *m);

/* Find or create the series name{labels}. labels is the inside of the braces, already escaped, e.g.
 * "route=\"/api/v1/objects/\",status=\"200\"", or NULL/"" for none. name and help are copied. The
 * returned pointer lives as long as the registry: cache it. Thread-safe (takes the registry lock);
 * NULL only when out of memory, and every update function accepts NULL. */
bp_metric_t *bp_metrics_counter(bp_metrics_t *m, const char *name, const char *help, const char *labels);
bp_metric_t *bp_metrics_gauge(bp_metrics_t *m, const char *name, const char *help, const char *labels);

/* A histogram with the given upper bounds (ascending; +Inf is implied). bounds is copied. */
bp_metric_t *bp_metrics_histogram(bp_metrics_t *m, const char *name, const char *help, const char *labels,
                                  const double *bounds, size_t nbounds);

/* A gauge whose value fn(arg) computes at render time (arg is borrowed for the registry's life). */
bp_metric_t *bp_metrics_gauge_fn(bp_metrics_t *m, const char *name, const char *help, const char *labels,
                                 bp_gauge_fn fn, void *arg);

void bp_counter_add(bp_metric_t *c, uint64_t n);
void bp_gauge_set(bp_metric_t *g, double v);
void bp_gauge_add(bp_metric_t *g, double delta);
void bp_histogram_observe(bp_metric_t *h, double v);

/* Current value of a counter or gauge (for tests and readiness checks). */
double bp_metric_value(const bp_metric_t *metric);

/* The whole registry in the Prometheus text format, series of one name grouped under one HELP/TYPE.
 * Returns a malloc'd NUL-terminated string (free it), or NULL when out of memory. */
char *bp_metrics_render(bp_metrics_t *m);

/* Escape a label value (backslash, quote, newline) into buf; returns buf. */
char *bp_metrics_escape(const char *value, char *buf, size_t buflen);

/* The label value of an HTTP method a client sent: the method itself when it is one of the standard
 * ones (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE; exact, case-sensitive), else
 * "OTHER". bp_metrics_method_labels lists them (static strings), OTHER last. */
#define BP_METRICS_N_METHODS 10
extern const char *const bp_metrics_method_labels[BP_METRICS_N_METHODS];
/* The index in bp_metrics_method_labels of method (len bytes, not NUL-terminated). */
int bp_metrics_method_index(const char *method, size_t len);

/* Latency buckets in seconds, from 0.5 ms to 10 s. */
extern const double bp_metrics_latency_buckets[];
extern const size_t bp_metrics_latency_nbuckets;

#endif
