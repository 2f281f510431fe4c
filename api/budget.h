/* budget.h - a process-wide count of the request-body bytes the API holds (buffered bodies and what
 * parsing them costs), against one limit. Any thread may call any function. */
#ifndef BP_BUDGET_H
#define BP_BUDGET_H

#include <stddef.h>

typedef struct bp_budget bp_budget_t;

/* A budget of limit bytes; NULL when out of memory. Free with bp_budget_free (accepts NULL). */
bp_budget_t *bp_budget_new(size_t limit);
void bp_budget_free(bp_budget_t *b);

/* Count n more bytes as held (memory already in use: never refused), or n bytes fewer. */
void bp_budget_charge(bp_budget_t *b, size_t n);
void bp_budget_release(bp_budget_t *b, size_t n);

/* 1 when the bytes held reach the limit: reading bodies pauses and POSTs are refused (503). */
int bp_budget_spent(const bp_budget_t *b);

/* The same, not counting own bytes of the caller's (its body, already counted while it arrived): a
 * body alone never spends the budget for itself. */
int bp_budget_spent_besides(const bp_budget_t *b, size_t own);

size_t bp_budget_held(const bp_budget_t *b);
size_t bp_budget_limit(const bp_budget_t *b);

#endif
