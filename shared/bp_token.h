/* bp_token.h - receipt tokens: the opaque name of one message in the topic (its partition and offset),
 * handed to producers on 202/201, read back by GET /api/v1/receipts/{token}/ and by `after=`. */
#ifndef BP_TOKEN_H
#define BP_TOKEN_H

#include <stddef.h>
#include <stdint.h>

/* Longest token bp_token_format writes, with its NUL. */
#define BP_TOKEN_MAX 48

/* Most tokens one `after=` list may carry. */
#define BP_TOKEN_LIST_MAX 32

typedef struct bp_token {
    int32_t partition;
    int64_t offset;
} bp_token_t;

/* Write the token of (partition, offset) in `topic` into buf (BP_TOKEN_MAX bytes are enough).
 * The text is "1.<partition>.<offset>.<8 hex digits of the topic's name hash>": URL-safe, no commas,
 * so it can go in a path, a query and a comma-separated list. Clients must treat it as opaque.
 * Returns the length written, or 0 when buf is too small or the numbers are negative. */
size_t bp_token_format(char *buf, size_t buflen, const char *topic, int32_t partition, int64_t offset);

/* Parse one token s[0..len) written by bp_token_format for the same topic. Returns 0 and fills *out,
 * or -1 with *why (a static string for a 400's detail): not a token, or a token of another topic. */
int bp_token_parse(const char *s, size_t len, const char *topic, bp_token_t *out, const char **why);

/* Parse a comma-separated list of tokens (spaces around the commas allowed) into out[0..max).
 * Keeps, per partition, only the highest offset (reading "after" all of them needs just that), so *n
 * is the number of distinct partitions. Returns 0, or -1 with *why: an empty list, a bad token, or
 * more than max distinct partitions. */
int bp_token_parse_list(const char *s, size_t len, const char *topic, bp_token_t *out, size_t max, size_t *n,
                        const char **why);

#endif
