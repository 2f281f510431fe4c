/* bp_metrics.c - the Prometheus registry. Series are created under a mutex and updated with C11
 * atomics, so the hot paths (a request, a transaction) never take a lock once they cached a pointer. */
#include "bp_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM, M_GAUGE_FN } metric_kind_t;

struct bp_metric {
    metric_kind_t kind;
    char *name;
    char *help;
    char *labels;
    _Atomic uint64_t count; /* counter value; histogram observation count */
    _Atomic double value;   /* gauge value; histogram sum */
    double *bounds;
    size_t nbounds;
    _Atomic uint64_t *buckets; /* nbounds + 1, not cumulative */
    bp_gauge_fn fn;
    void *fn_arg;
    struct bp_metric *next;
};

struct bp_metrics {
    pthread_mutex_t lock;
    bp_metric_t *head, *tail; /* creation order: rendering groups by name in that order */
    size_t nseries;
    bp_metric_t *dropped; /* bp_metrics_series_dropped_total, outside the cap */
};

const char *const bp_metrics_method_labels[BP_METRICS_N_METHODS] = {"GET",     "HEAD",    "POST",  "PUT",
                                                                    "DELETE",  "PATCH",   "OPTIONS",
                                                                    "CONNECT", "TRACE",   "OTHER"};

int bp_metrics_method_index(const char *method, size_t len)
{
    for (int i = 0; i < BP_METRICS_N_METHODS - 1; i++) {
        if (strlen(bp_metrics_method_labels[i]) == len && memcmp(bp_metrics_method_labels[i], method, len) == 0)
            return i;
    }
    return BP_METRICS_N_METHODS - 1;
}

const double bp_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t bp_metrics_latency_nbuckets = sizeof(bp_metrics_latency_buckets) / sizeof(double);

static bp_metric_t *find_or_add(bp_metrics_t *m, metric_kind_t kind, const char *name, const char *help,
                                const char *labels, const double *bounds, size_t nbounds);

bp_metrics_t *bp_metrics_new(void)
{
    bp_metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->dropped = find_or_add(m, M_COUNTER, "bp_metrics_series_dropped_total",
                             "New metric series refused because the registry holds its maximum.", NULL, NULL, 0);
    if (m->dropped == NULL) {
        bp_metrics_free(m);
        return NULL;
    }
    m->nseries = 0; /* the refusal counter does not count against the cap */
    return m;
}

static void metric_free(bp_metric_t *x)
{
    free(x->name);
    free(x->help);
    free(x->labels);
    free(x->bounds);
    free((void *)x->buckets);
    free(x);
}

void bp_metrics_free(bp_metrics_t *m)
{
    if (m == NULL)
        return;
    for (bp_metric_t *x = m->head, *next; x != NULL; x = next) {
        next = x->next;
        metric_free(x);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static bp_metric_t *find_or_add(bp_metrics_t *m, metric_kind_t kind, const char *name, const char *help,
                                const char *labels, const double *bounds, size_t nbounds)
{
    if (m == NULL)
        return NULL;
    if (labels == NULL)
        labels = "";
    pthread_mutex_lock(&m->lock);
    for (bp_metric_t *x = m->head; x != NULL; x = x->next) {
        if (strcmp(x->name, name) == 0 && strcmp(x->labels, labels) == 0) {
            pthread_mutex_unlock(&m->lock);
            return x;
        }
    }
    if (m->nseries >= BP_METRICS_MAX_SERIES) {
        pthread_mutex_unlock(&m->lock);
        bp_counter_add(m->dropped, 1);
        return NULL;
    }
    bp_metric_t *x = calloc(1, sizeof(*x));
    if (x == NULL)
        goto fail;
    x->kind = kind;
    x->name = strdup(name);
    x->help = strdup(help);
    x->labels = strdup(labels);
    if (x->name == NULL || x->help == NULL || x->labels == NULL)
        goto fail;
    if (kind == M_HISTOGRAM) {
        x->bounds = malloc(nbounds * sizeof(double));
        x->buckets = calloc(nbounds + 1, sizeof(*x->buckets));
        if (x->bounds == NULL || x->buckets == NULL)
            goto fail;
        memcpy(x->bounds, bounds, nbounds * sizeof(double));
        x->nbounds = nbounds;
    }
    if (m->tail != NULL)
        m->tail->next = x;
    else
        m->head = x;
    m->tail = x;
    m->nseries++;
    pthread_mutex_unlock(&m->lock);
    return x;
fail:
    pthread_mutex_unlock(&m->lock);
    if (x != NULL)
        metric_free(x);
    return NULL;
}

bp_metric_t *bp_metrics_counter(bp_metrics_t *m, const char *name, const char *help, const char *labels)
{
    return find_or_add(m, M_COUNTER, name, help, labels, NULL, 0);
}

bp_metric_t *bp_metrics_gauge(bp_metrics_t *m, const char *name, const char *help, const char *labels)
{
    return find_or_add(m, M_GAUGE, name, help, labels, NULL, 0);
}

bp_metric_t *bp_metrics_histogram(bp_metrics_t *m, const char *name, const char *help, const char *labels,
                                  const double *bounds, size_t nbounds)
{
    return find_or_add(m, M_HISTOGRAM, name, help, labels, bounds, nbounds);
}

bp_metric_t *bp_metrics_gauge_fn(bp_metrics_t *m, const char *name, const char *help, const char *labels,
                                 bp_gauge_fn fn, void *arg)
{
    bp_metric_t *x = find_or_add(m, M_GAUGE_FN, name, help, labels, NULL, 0);
    if (x != NULL) {
        x->fn = fn;
        x->fn_arg = arg;
    }
    return x;
}

void bp_counter_add(bp_metric_t *c, uint64_t n)
{
    if (c != NULL)
        atomic_fetch_add_explicit(&c->count, n, memory_order_relaxed);
}

void bp_gauge_set(bp_metric_t *g, double v)
{
    if (g != NULL)
        atomic_store_explicit(&g->value, v, memory_order_relaxed);
}

static void atomic_add_double(_Atomic double *target, double delta)
{
    double old = atomic_load_explicit(target, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(target, &old, old + delta, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

void bp_gauge_add(bp_metric_t *g, double delta)
{
    if (g != NULL)
        atomic_add_double(&g->value, delta);
}

void bp_histogram_observe(bp_metric_t *h, double v)
{
    if (h == NULL || h->kind != M_HISTOGRAM)
        return;
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_add_double(&h->value, v);
}

double bp_metric_value(const bp_metric_t *x)
{
    if (x == NULL)
        return 0;
    switch (x->kind) {
    case M_COUNTER:
    case M_HISTOGRAM:
        return (double)atomic_load_explicit(&x->count, memory_order_relaxed);
    case M_GAUGE:
        return atomic_load_explicit(&x->value, memory_order_relaxed);
    case M_GAUGE_FN:
        return x->fn(x->fn_arg);
    }
    return 0;
}

char *bp_metrics_escape(const char *value, char *buf, size_t buflen)
{
    size_t o = 0;
    for (const char *p = value; *p != '\0' && o + 3 < buflen; p++) {
        if (*p == '\\' || *p == '"') {
            buf[o++] = '\\';
            buf[o++] = *p;
        } else if (*p == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *p;
        }
    }
    buf[o] = '\0';
    return buf;
}

static const char *type_name(metric_kind_t k)
{
    return k == M_COUNTER ? "counter" : k == M_HISTOGRAM ? "histogram" : "gauge";
}

/* "name{labels}" or "name{labels,extra}" */
static void series(FILE *f, const char *name, const char *suffix, const char *labels, const char *extra)
{
    fprintf(f, "%s%s", name, suffix);
    if (labels[0] != '\0' || extra != NULL) {
        fprintf(f, "{%s%s%s}", labels, labels[0] != '\0' && extra != NULL ? "," : "", extra ? extra : "");
    }
}

static void render_one(FILE *f, const bp_metric_t *x)
{
    switch (x->kind) {
    case M_COUNTER:
        series(f, x->name, "", x->labels, NULL);
        fprintf(f, " %llu\n", (unsigned long long)atomic_load_explicit(&x->count, memory_order_relaxed));
        break;
    case M_GAUGE:
    case M_GAUGE_FN:
        series(f, x->name, "", x->labels, NULL);
        fprintf(f, " %.15g\n", bp_metric_value(x));
        break;
    case M_HISTOGRAM: {
        uint64_t cum = 0;
        char le[64];
        for (size_t i = 0; i <= x->nbounds; i++) {
            cum += atomic_load_explicit(&x->buckets[i], memory_order_relaxed);
            if (i < x->nbounds)
                snprintf(le, sizeof(le), "le=\"%g\"", x->bounds[i]);
            else
                snprintf(le, sizeof(le), "le=\"+Inf\"");
            series(f, x->name, "_bucket", x->labels, le);
            fprintf(f, " %llu\n", (unsigned long long)cum);
        }
        series(f, x->name, "_sum", x->labels, NULL);
        fprintf(f, " %.15g\n", atomic_load_explicit(&x->value, memory_order_relaxed));
        series(f, x->name, "_count", x->labels, NULL);
        /* the count equals the +Inf bucket; read the buckets' total so the two agree */
        fprintf(f, " %llu\n", (unsigned long long)cum);
        break;
    }
    }
}

char *bp_metrics_render(bp_metrics_t *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return NULL;
    pthread_mutex_lock(&m->lock);
    /* group series by name: for each first occurrence of a name, print HELP/TYPE and all its series */
    for (bp_metric_t *x = m->head; x != NULL; x = x->next) {
        int seen = 0;
        for (bp_metric_t *y = m->head; y != x; y = y->next)
            seen |= strcmp(y->name, x->name) == 0;
        if (seen)
            continue;
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", x->name, x->help, x->name, type_name(x->kind));
        for (bp_metric_t *y = x; y != NULL; y = y->next) {
            if (strcmp(y->name, x->name) == 0)
                render_one(f, y);
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
