/* bp_clock.h - the monotonic clock, read the same way everywhere: for deadlines, ages and durations
 * (never for wall-clock time; it counts from an arbitrary point, usually boot). */
#ifndef BP_CLOCK_H
#define BP_CLOCK_H

#include <stdint.h>

/* Monotonic milliseconds. Signed so that `deadline - bp_clock_ms()` goes negative once a deadline
 * has passed; callers that keep uint64_t stamps cast the (never negative) reading. */
long long bp_clock_ms(void);

/* Monotonic microseconds, for latencies finer than a millisecond. */
uint64_t bp_clock_us(void);

/* Monotonic seconds with a fraction, for durations reported in seconds. */
double bp_clock_s(void);

#endif
