/* fuzz_count_terms.c - fuzz target for the worker's counter terms (ingest/count_terms.h), which read an
 * object's data as stored: bp_count_terms_add_object on any bytes (the worker only hands it validated
 * data, but it must not trust that), and the canonical number and typed rule on any lexeme.
 *
 * Input: the data text. Oracles: a canonical number is a plain decimal (optional '-', no exponent, no
 * leading zero but "0", no trailing fractional zero) and canonicalizing it again gives itself; the typed
 * rule agrees with the canonical number on numbers; the terms of an object add up to one 't' term. */
#include <string.h>

#include "fuzz.h"
#include "count_terms.h"

static void check_canonical(const char *s, size_t n)
{
    FUZZ_CHECK(n > 0 && strlen(s) == n);
    size_t i = s[0] == '-';
    FUZZ_CHECK(i < n && s[i] >= '0' && s[i] <= '9');
    FUZZ_CHECK(!(s[i] == '0' && i + 1 < n && s[i + 1] != '.'));
    FUZZ_CHECK(!(i == 1 && strcmp(s, "-0") == 0));
    const char *dot = memchr(s, '.', n);
    FUZZ_CHECK(dot == NULL || s[n - 1] != '0');
    char *again = NULL;
    size_t alen = 0;
    FUZZ_CHECK(bp_count_canon_number(s, n, &again, &alen) == BP_COUNT_OK);
    FUZZ_CHECK(alen == n && memcmp(again, s, n) == 0);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    if (size < 64 && memchr(text, '\0', size) == NULL) {
        char *out = NULL, *typed = NULL;
        size_t olen = 0, tlen = 0;
        int rc = bp_count_canon_number(text, size, &out, &olen);
        int trc = bp_count_typed(text, size, &typed, &tlen);
        if (rc == BP_COUNT_OK) {
            check_canonical(out, olen);
            FUZZ_CHECK(trc == 1 && tlen == olen && memcmp(out, typed, olen) == 0);
        } else if (rc == BP_COUNT_OVERFLOW) {
            FUZZ_CHECK(trc == BP_COUNT_OVERFLOW);
        }
        free(out);
        free(typed);
    }
    bp_count_terms_t *t = bp_count_terms_new();
    if (t == NULL)
        return 0;
    const char *sparse[] = {"sku", "type"};
    int rc = bp_count_terms_add_object(t, "b", 1, text, size, sparse, 2, 1);
    FUZZ_CHECK(rc == BP_COUNT_OK || rc == BP_COUNT_MALFORMED || rc == BP_COUNT_OVERFLOW || rc == BP_COUNT_NOMEM);
    if (rc == BP_COUNT_OK) {
        size_t pos = 0, total = 0;
        bp_count_term_t term;
        while (bp_count_terms_next(t, &pos, &term)) {
            FUZZ_CHECK(term.n == 1);
            total += term.kind == 't';
        }
        FUZZ_CHECK(total == 1);
    }
    bp_count_terms_free(t);
    return 0;
}
