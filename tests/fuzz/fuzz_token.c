/* fuzz_token.c - fuzz target for receipt tokens (shared/bp_token.h), which the API reads from any client's
 * path, ?after= and BP-After header: parsing never reads past the text, and a token is accepted only
 * in the one spelling bp_token_format writes for it; a batch id round-trips through a version-2 token.
 *
 * Input: byte 0 picks the mode (bit 0); then, in parse mode, the token text or a comma-separated list
 * (not NUL-terminated), in format mode the bytes of a batch id. */
#include <string.h>

#include "bp_token.h"
#include "fuzz.h"

static const char TOPIC[] = "batchpipe.batches";

/* What a token names, written again: it must be the text itself (one spelling per token). */
static void check_canonical(const char *s, size_t len, const bp_token_t *t, const bp_token_batch_t *b)
{
    char again[BP_TOKEN_MAX];
    size_t n = bp_token_format(again, sizeof(again), TOPIC, t->partition, t->offset, b->len ? b->id : NULL,
                               b->len);
    FUZZ_CHECK(n == len && memcmp(again, s, len) == 0);
    FUZZ_CHECK(b->len <= BP_TOKEN_BATCH_ID_MAX && b->id[b->len] == '\0');
    FUZZ_CHECK(memchr(b->id, '\0', b->len) == NULL && fuzz_utf8_ok(b->id, b->len));
    FUZZ_CHECK(t->text == s && t->text_len == len);
}

static void parse_mode(const char *s, size_t len)
{
    bp_token_t t;
    bp_token_batch_t b;
    const char *why = "unset";
    if (bp_token_parse(s, len, TOPIC, &t, &b, &why) == 0) {
        FUZZ_CHECK(why == NULL);
        check_canonical(s, len, &t, &b);
    } else {
        FUZZ_CHECK(why != NULL && fuzz_utf8_ok(why, strlen(why)));
    }
    bp_token_t out[4];
    size_t n = 0;
    if (bp_token_parse_list(s, len, TOPIC, out, 4, &n, &why) == 0) {
        FUZZ_CHECK(n >= 1 && n <= 4);
        for (size_t k = 0; k < n; k++) {
            /* each kept entry is one of the list's tokens, inside the text, and reads the same alone */
            FUZZ_CHECK(out[k].text >= s && out[k].text + out[k].text_len <= s + len);
            bp_token_t one;
            FUZZ_CHECK(bp_token_parse(out[k].text, out[k].text_len, TOPIC, &one, &b, &why) == 0);
            FUZZ_CHECK(one.partition == out[k].partition && one.offset == out[k].offset);
            for (size_t j = 0; j < k; j++)
                FUZZ_CHECK(out[j].partition != out[k].partition);
        }
    }
}

static void format_mode(const char *id, size_t len)
{
    char tok[BP_TOKEN_MAX];
    int64_t offset = (int64_t)len * 7919;
    size_t n = bp_token_format(tok, sizeof(tok), TOPIC, 5, offset, id, len);
    FUZZ_CHECK(n > 0 && n < BP_TOKEN_MAX && strlen(tok) == n);
    bp_token_t t;
    bp_token_batch_t b;
    const char *why;
    int carried = len >= 1 && len <= BP_TOKEN_BATCH_ID_MAX;
    FUZZ_CHECK(tok[0] == (carried ? '2' : '1'));
    int ok = bp_token_parse(tok, n, TOPIC, &t, &b, &why) == 0;
    /* an id the API would not issue (NUL, not UTF-8) is written but refused when read back */
    int valid = carried && memchr(id, '\0', len) == NULL && fuzz_utf8_ok(id, len);
    FUZZ_CHECK(ok == (valid || !carried));
    if (ok) {
        FUZZ_CHECK(t.partition == 5 && t.offset == offset);
        FUZZ_CHECK(b.len == (carried ? len : 0) && memcmp(b.id, id, b.len) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* a copy of exactly the text's bytes: AddressSanitizer catches a read past it */
    size_t len = size - 1;
    char *s = malloc(len ? len : 1);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, len);
    if (data[0] & 1)
        format_mode(s, len);
    else
        parse_mode(s, len);
    free(s);
    return 0;
}
