/* bp_token.h - receipt tokens: the opaque name of one message in the topic (its partition and offset,
 * and from version 2 its batch id), handed to producers on 202/201, read back by
 * GET /api/v1/receipts/{token}/, by `after=` and by `batchpipe receipt`. */
#ifndef BP_TOKEN_H
#define BP_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "bp_b64url.h"

/* Longest batch id a token carries, in bytes: BP_MAX_ID_LEN's default. A message whose batch id is
 * longer (a larger BP_MAX_ID_LEN) gets a version-1 token, whose receipt cannot link the batch. */
#define BP_TOKEN_BATCH_ID_MAX 255

/* Longest token bp_token_format writes, with its NUL: "2." + 10 digits + "." + 19 + "." + 8 hex + "."
 * + the batch id's base64url + NUL, rounded up. */
#define BP_TOKEN_MAX (48 + BP_B64URL_LEN(BP_TOKEN_BATCH_ID_MAX))

/* Most tokens one `after=` list may carry. */
#define BP_TOKEN_LIST_MAX 32

typedef struct bp_token {
    int32_t partition;
    int64_t offset;
    const char *text; /* the token as parsed, text_len bytes, borrowed from the parsed string */
    size_t text_len;
} bp_token_t;

/* The batch id a version-2 token carries; len 0 for a version-1 token (a batch id is never empty). */
typedef struct bp_token_batch {
    size_t len;
    char id[BP_TOKEN_BATCH_ID_MAX + 1]; /* NUL-terminated (an id is free of NULs: the validator) */
} bp_token_batch_t;

/* Write the token of (partition, offset) in `topic`, of a message of batch batch_id[0..batch_id_len),
 * into buf (BP_TOKEN_MAX bytes are enough). With a batch id of 1..BP_TOKEN_BATCH_ID_MAX bytes it is
 * version 2, "2.<partition>.<offset>.<hash>.<base64url of the batch id>", where hash is 8 hex digits of
 * the FNV-1a hash of the topic's name continued over "<partition>.<offset>." and the batch id; without
 * one (batch_id NULL, or too long) version 1, "1.<partition>.<offset>.<8 hex digits of the topic's name
 * hash>". Either is URL-safe, without commas, so it can go in a path, a query and a comma-separated
 * list. Clients must treat it as opaque. Returns the length written, or 0 when buf is too small or the
 * numbers are negative. */
size_t bp_token_format(char *buf, size_t buflen, const char *topic, int32_t partition, int64_t offset,
                       const char *batch_id, size_t batch_id_len);

/* Parse one token s[0..len) of either version written by bp_token_format for the same topic. Returns 0
 * and fills *out and, when batch is not NULL, *batch (len 0 for version 1); or -1 with *why (a static
 * string for a 400's detail): not a token (as is a batch id part longer than BP_TOKEN_BATCH_ID_MAX
 * bytes, or one that is not UTF-8 without NULs), a version 1 of another topic, or a version 2 of another
 * topic or altered: its hash covers the topic, partition, offset and batch id, so which of them
 * differs cannot be told. */
int bp_token_parse(const char *s, size_t len, const char *topic, bp_token_t *out, bp_token_batch_t *batch,
                   const char **why);

/* Parse a comma-separated list of tokens (spaces around the commas allowed) into out[0..max).
 * Keeps, per partition, only the highest offset (reading "after" all of them needs just that), so *n
 * is the number of distinct partitions; each kept entry's text is that of the (first) token that
 * named it, so a client is answered with its own tokens. Returns 0, or -1 with *why: an empty list, a
 * bad token, or more than max distinct partitions. */
int bp_token_parse_list(const char *s, size_t len, const char *topic, bp_token_t *out, size_t max, size_t *n,
                        const char **why);

#endif
