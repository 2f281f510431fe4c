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
 * member twice in one JSON object and nesting deeper than BP_PAYLOAD_MAX_DEPTH are refused. Numbers:
 * the tree is for validation only - what is published and stored is the producer's own text (see
 * api/write.c), so no number is ever rounded on its way. In the tree an integer outside the int64
 * range is a real (a double) instead of being refused. Refused: a number beyond the double range
 * (1e400, a 400-digit integer: jansson cannot read it), and a NUL byte outside strings (jansson reads
 * [1\0] as [1]; the text itself is published). A number jansson reads but PostgreSQL's numeric cannot
 * store (1e-20000) passes the parser - the worker leaves it to the database, which refuses it (a dead
 * letter) - and the API refuses it first with bp_payload_check_numbers.
 */
#ifndef BP_PAYLOAD_H
#define BP_PAYLOAD_H

#include <stddef.h>

#include <jansson.h>

#include "bp_error.h"

#define BP_MAX_VIOLATIONS 100    /* violations stored; more are only counted */
#define BP_PAYLOAD_MAX_DEPTH 64  /* nesting of [ and { a body may have; a batch needs 4 */
#define BP_NUMERIC_MAX_SCALE 16383        /* PostgreSQL numeric: digits after the decimal point */
#define BP_NUMERIC_MAX_EXPONENT 1073741823 /* PostgreSQL numeric: |exponent| must stay below (INT_MAX/2) */

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

/* Validate a batch body (buf[0..len), borrowed) without building its whole tree: a skeleton and one
 * object at a time, about a third of the body's size at most instead of about 8 times it. Returns 1
 * when the body is a valid batch - exactly when bp_payload_parse and bp_payload_validate_batch would
 * accept it - with *batch_id a new reference to its batch_id string (json_decref it) and *objects the
 * number of objects. Returns 0 (and NULL, 0) when it is not valid, or when this way does not decide
 * (integers beyond int64, nesting or NUL bytes, a text the scanner cannot cut, out of memory): then
 * the full path gives the verdict and the messages. Numbers are not checked here either
 * (bp_payload_check_numbers). */
int bp_payload_batch_lean(const char *buf, size_t len, const bp_payload_limits_t *lim, json_t **batch_id,
                          size_t *objects) BP_MUST_CHECK;

/* Validate the single-object form {"batch_id", "object_id", "data"}; same contract as
 * bp_payload_validate_batch (max_objects does not apply). Pointers are relative to that document:
 * "/object_id", "/data/2/value". */
int bp_payload_validate_object(const json_t *doc, const bp_payload_limits_t *lim, bp_violations_t *v)
    BP_MUST_CHECK;

/* The batch text {"batch_id":B,"objects":[{"object_id":O,"data":D}]} of a single-object body
 * (body[0..len), borrowed; validate its document with bp_payload_validate_object first), where B, O and D
 * are those members' bytes exactly as the body writes them: numbers and strings keep their spelling.
 * Returns a malloc'd text (free it; not NUL-terminated) of *outlen bytes, or NULL when the body lacks
 * one of the three members (or batch_id or object_id is not a string, or data not an array), or out
 * of memory. */
char *bp_payload_object_to_batch(const char *body, size_t len, size_t *outlen) BP_MUST_CHECK;

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

/* The violations as a JSON array [{"pointer": "...", "message": "..."}] of the stored ones (v->count
 * entries; v->total says how many there were). v is borrowed. Returns a new reference, or NULL on
 * allocation failure. */
json_t *bp_violations_to_json(const bp_violations_t *v) BP_MUST_CHECK;

/* Whether the JSON number lexeme s[0..n) can be stored in PostgreSQL's numeric (hence jsonb) as
 * written: its exponent below BP_NUMERIC_MAX_EXPONENT in magnitude, and at most BP_NUMERIC_MAX_SCALE
 * digits after the decimal point once the exponent is applied (1e-16383 fits, 10e-16384 and
 * 1e-20000 do not; PostgreSQL counts the digits written, not the value). Returns 1 for text that is
 * not a number (its parser refuses it), 0 when it does not fit. */
int bp_payload_number_fits(const char *s, size_t n);

/* Check every number of a parsed body (buf[0..len), borrowed) with bp_payload_number_fits. v is cleared
 * first. Returns 0, or -1 with one violation at pointer "" naming the line and column of the first
 * number that does not fit. */
int bp_payload_check_numbers(const char *buf, size_t len, bp_violations_t *v) BP_MUST_CHECK;

/* Number of entries in a batch's "objects" array (batch borrowed); 0 if there is no such array. */
size_t bp_payload_object_count(const json_t *batch);

#endif
