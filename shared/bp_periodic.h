/* bp_periodic.h - a background thread that works in rounds and sleeps between them on the monotonic
 * clock, until stopped: a stop (or the owner's "a round now") wakes it at once. Used by the API's
 * replica monitor and Kafka watermarks, which had each written the same start, sleep, stop and join. */
#ifndef BP_PERIODIC_H
#define BP_PERIODIC_H

#include <pthread.h>
#include <stdatomic.h>

#include "bp_error.h"

/* Embedded in its owner rather than opaque: the owner guards its own shared state with mu, the mutex
 * the thread's sleep waits on, so that setting a flag and waking the thread is one critical section. */
typedef struct bp_periodic {
    pthread_mutex_t mu;  /* the owner's to use; bp_periodic_sleep releases it while waiting */
    pthread_cond_t wake; /* on CLOCK_MONOTONIC */
    atomic_int stop;
    pthread_t tid;
    int started;
} bp_periodic_t;

/* Initialize p (no thread yet). Pair with bp_periodic_destroy. */
void bp_periodic_init(bp_periodic_t *p);

/* Start the thread running fn(arg); fn loops while !bp_periodic_stopping(p), calling bp_periodic_sleep
 * between rounds. Returns 0, or -1 when no thread could be started. */
int bp_periodic_start(bp_periodic_t *p, void *(*fn)(void *), void *arg) BP_MUST_CHECK;

/* Ask the thread to stop and wake it. Any thread, any number of times; does not wait. */
void bp_periodic_stop(bp_periodic_t *p);

/* Whether a stop was asked for. */
int bp_periodic_stopping(bp_periodic_t *p);

/* In the thread, between rounds: wait up to ms milliseconds, or until a stop is asked or, when woken
 * is not NULL, *woken is set (read under mu; the owner sets it under mu, then bp_periodic_wake).
 * Call without holding mu. */
void bp_periodic_sleep(bp_periodic_t *p, long long ms, const int *woken);

/* Wake the thread's sleep. The caller holds mu (and has just set the flag it passes as woken). */
void bp_periodic_wake(bp_periodic_t *p);

/* Stop the thread, wait for it to end (if it was started) and free what init made. */
void bp_periodic_destroy(bp_periodic_t *p);

#endif
