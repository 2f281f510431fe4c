/* budget.c - the process-wide count of request-body bytes held (api/budget.h): one atomic counter,
 * so that every loop thread sees what the others hold without a lock. */
#include "budget.h"

#include <stdatomic.h>
#include <stdlib.h>

struct bp_budget {
    size_t limit;
    atomic_size_t held;
};

bp_budget_t *bp_budget_new(size_t limit)
{
    bp_budget_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->limit = limit;
    atomic_init(&b->held, 0);
    return b;
}

void bp_budget_free(bp_budget_t *b)
{
    free(b);
}

void bp_budget_charge(bp_budget_t *b, size_t n)
{
    atomic_fetch_add_explicit(&b->held, n, memory_order_relaxed);
}

void bp_budget_release(bp_budget_t *b, size_t n)
{
    atomic_fetch_sub_explicit(&b->held, n, memory_order_relaxed);
}

int bp_budget_spent(const bp_budget_t *b)
{
    return atomic_load_explicit(&((bp_budget_t *)b)->held, memory_order_relaxed) >= b->limit;
}

int bp_budget_spent_besides(const bp_budget_t *b, size_t own)
{
    size_t held = bp_budget_held(b);
    return held - (own < held ? own : held) >= b->limit;
}

size_t bp_budget_held(const bp_budget_t *b)
{
    return atomic_load_explicit(&((bp_budget_t *)b)->held, memory_order_relaxed);
}

size_t bp_budget_limit(const bp_budget_t *b)
{
    return b->limit;
}
