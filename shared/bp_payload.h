/* bp_payload.h - the batch payload model: parsing a request body and validating a batch or a single
 * object against the rules of schemas/batch.schema.json and schemas/object.schema.json.
 *
 * A batch:       {"batch_id": ID, "objects": [{"object_id": ID, "data": [{"key": KEY, "value": V}]}]}
 * A single one:  {"batch_id": ID, "object_id": ID, "data": [...]}     (POST /api/v1/objects/)
 *
 * Rules, beyond the shapes above (limits come from bp_payload_limits_t, all at least 1):
 *   - No other properties at any level: a misspelt member ("metadta", "kye") is reported twice, as
 *     unknown where it is and as a missing required property on the object that lacks the real one.
 *   - IDs (batch_id, object_id): a non-empty string of at most max_id_len bytes with no control
 *     characters (bytes 0x00-0x1f and 0x7f), because ids end up in URLs, logs and Kafka keys.
 *   - object_id is unique within a batch.
 *   - objects: 1 to max_objects entries. data: 0 to max_pairs pairs (an object may have no data).
 *   - key: a non-empty string of at most max_key_len bytes (control characters are allowed there).
 *   - value: a string of at most max_string_len bytes, a number, true, false or null.
 *   - The same key may appear more than once in one object's data: the pairs are kept as sent, in
 *     their order. Deciding what repeated keys mean is the reader's business, not the validator's.
 *   - Lengths are counted in UTF-8 bytes, not characters.
 *
 * Parsing (jansson): invalid UTF-8, \u0000 anywhere (PostgreSQL text cannot store it), the same
 * member twice in one JSON object and nesting deeper than BP_PAYLOAD_MAX_DEPTH are refused. An integer
 * outside the int64 range is kept as a real (a double: exact up to 2^53, then rounded to 17
 * significant digits) instead of being refused; other integers in the same body stay integers. A
 * number beyond the double range (1e400) is refused.
 */
#ifndef BP_PAYLOAD_H
#define BP_PAYLOAD_H

#include <stddef.h>

#include <jansson.h>

#include "bp_error.h"

#define BP_MAX_VIOLATIONS 100    /* violations stored; more are only counted */
#define BP_PAYLOAD_MAX_DEPTH 64  /* nesting of [ and { a body may have; a batch needs 4 */

typedef struct bp_payload_limits {
    long long max_objects;    /* objects per batch */
    long long max_pairs;      /* pairs in one object's data */
    long long max_id_len;     /* bytes in batch_id and object_id */
    long long max_key_len;    /* bytes in a key */
    long long max_string_len; /* bytes in a string value */
} bp_payload_limits_t;

/* One violation: a JSON pointer (RFC 6901, e.g. "/objects/17/data/3/key", "" for the whole
 * document) to the value at fault, and a plain English message. A missing required property is
 * reported on the object that lacks it. Both strings are NUL-terminated and valid UTF-8, ready for
 * json_string(). A pointer through a very long unknown member name is cut at a character boundary to
 * fit. Names and ids quoted in messages show at most 64 bytes then "...", with '"' and '\' escaped and
 * control bytes written \xNN. */
typedef struct bp_violation {
    char pointer[256];
    char message[256];
} bp_violation_t;

typedef struct bp_violations {
    size_t count; /* stored in items, at most BP_MAX_VIOLATIONS */
    size_t total; /* found; may exceed count */
    bp_violation_t items[BP_MAX_VIOLATIONS];
} bp_violations_t;

/* Parse a request body of len bytes (buf need not be NUL-terminated; it may be NULL when len is 0).
 * Before jansson sees it, the body is scanned once without recursion: nesting deeper than
 * BP_PAYLOAD_MAX_DEPTH is refused there, so a 100,000-deep body costs one pass and no stack.
 * On success returns a new reference (free with json_decref) and leaves v empty.
 * On failure returns NULL and v holds one violation with pointer "" and a message naming the line
 * and column ("invalid JSON at line 3, column 7: ..."), or the body is empty, or the nesting.
 * Running out of memory is also reported that way. v is borrowed and must not be NULL.
 * The result may be any JSON object or array: check it with a validate function. */
json_t *bp_payload_parse(const char *buf, size_t len, bp_violations_t *v) BP_MUST_CHECK;

/* Validate a batch document (doc and lim borrowed). v is cleared first, then receives every
 * violation, up to BP_MAX_VIOLATIONS stored and all counted in v->total. They come in document order
 * of the objects; within one object: its missing properties, then problems in its members, then its
 * unknown members. A duplicate object_id is reported at the later object and names the first; only
 * ids that are otherwise valid take part. v may be NULL when only the verdict matters.
 * Returns 0 if the document is a valid batch, -1 otherwise (also if the duplicate check cannot get
 * memory: then a violation with pointer "" says so). */
int bp_payload_validate_batch(const json_t *doc, const bp_payload_limits_t *lim, bp_violations_t *v)
    BP_MUST_CHECK;

/* Validate the single-object form {"batch_id", "object_id", "data"}; same contract as
 * bp_payload_validate_batch (max_objects does not apply). Pointers are relative to that document:
 * "/object_id", "/data/2/value". */
int bp_payload_validate_object(const json_t *doc, const bp_payload_limits_t *lim, bp_violations_t *v)
    BP_MUST_CHECK;

/* Whether doc (borrowed) is meant as a delete message: a JSON object with an "op" member. A batch
 * never has one, so a document is judged as a batch or as a delete by this alone. */
int bp_payload_is_delete(const json_t *doc);

/* Validate a delete message of the batch topic (docs/TOPIC.md), same contract as
 * bp_payload_validate_batch:
 *   {"op": "delete", "batch_id": ID, "object_id": ID}       one object (of that batch at delete time)
 *   {"op": "delete", "batch_id": ID, "cascade": true|false}  the batch, with its objects or only if empty
 * op must be exactly "delete"; batch_id is required; ids follow the batch's id rules; cascade is a
 * boolean and not given together with object_id (cascade absent means false); no other members. */
int bp_payload_validate_delete(const json_t *doc, const bp_payload_limits_t *lim, bp_violations_t *v)
    BP_MUST_CHECK;

/* Turn a single-object document (borrowed; validate it first) into the batch
 * {"batch_id": ..., "objects": [{"object_id": ..., "data": [...]}]}. The result is a new reference
 * sharing nothing with obj (free with json_decref). Returns NULL if obj does not have the three members
 * with the right types, or on allocation failure. */
json_t *bp_payload_object_to_batch(const json_t *obj) BP_MUST_CHECK;

/* The violations as a JSON array [{"pointer": "...", "message": "..."}] of the stored ones (v->count
 * entries; v->total says how many there were). v is borrowed. Returns a new reference, or NULL on
 * allocation failure. */
json_t *bp_violations_to_json(const bp_violations_t *v) BP_MUST_CHECK;

/* Number of entries in a batch's "objects" array (batch borrowed); 0 if there is no such array. */
size_t bp_payload_object_count(const json_t *batch);

#endif
