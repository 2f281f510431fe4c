/* bp_periodic.c - the background thread of bp_periodic.h: a mutex, a condition variable on the
 * monotonic clock (a wall-clock step must not stretch or cut a sleep) and an atomic stop flag. */
#include "bp_periodic.h"

#include <errno.h>
#include <time.h>

void bp_periodic_init(bp_periodic_t *p)
{
    atomic_init(&p->stop, 0);
    p->started = 0;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
}

int bp_periodic_start(bp_periodic_t *p, void *(*fn)(void *), void *arg)
{
    if (pthread_create(&p->tid, NULL, fn, arg) != 0)
        return -1;
    p->started = 1;
    return 0;
}

void bp_periodic_stop(bp_periodic_t *p)
{
    /* under mu: a sleep that checked the flag just before is then already waiting, and gets the signal */
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->mu);
}

int bp_periodic_stopping(bp_periodic_t *p)
{
    return atomic_load(&p->stop);
}

void bp_periodic_sleep(bp_periodic_t *p, long long ms, const int *woken)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    while (!atomic_load(&p->stop) && (woken == NULL || !*woken) &&
           pthread_cond_timedwait(&p->wake, &p->mu, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&p->mu);
}

void bp_periodic_wake(bp_periodic_t *p)
{
    pthread_cond_signal(&p->wake);
}

void bp_periodic_destroy(bp_periodic_t *p)
{
    bp_periodic_stop(p);
    if (p->started)
        pthread_join(p->tid, NULL);
    p->started = 0;
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
}
