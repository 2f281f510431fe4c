/* query.h - the read path's pure logic: query-string values (filters, page, page_size, count; cursor=
 * is cursor.h's) turned into parameterised SQL. No h2o, no libpq: everything here is unit-tested
 * (tests/unit/test_query.c).
 *
 * Filters (docs/QUERIES.md has the user-facing rules):
 *   data={"type":"shoe","color":"red"}  every pair present, with the JSON type of each value
 *   key=K                               some pair has key K
 *   value=V                             some pair has value V (typed rule below)
 *   key=K&value=V                       some pair is (K, V)
 * They combine with AND. Each becomes a containment test served by the GIN index objects_data_idx:
 *   data @> '[{"key":"type","value":"shoe"},{"key":"color","value":"red"}]'
 * The typed rule for value= (a query string has no types): V always matches the string V. If V is a
 * JSON number, true, false or null, it also matches that typed value (value=42 matches 42 and "42").
 * If V is a JSON string literal in double quotes, it matches only that string (value="42" matches
 * "42", not 42). So a filter is an OR of at most two containment arrays ("alternatives").
 * Numbers (and every key and value) go into the containment JSON exactly as the client wrote them
 * (query.c says why, where it builds them). A number PostgreSQL's numeric cannot store
 * (bp_payload_number_fits) is refused. */
#ifndef BP_QUERY_H
#define BP_QUERY_H

#include <stddef.h>

#include "bp_error.h"
#include "cursor.h"

#define BP_QUERY_FILTER_MAX_BYTES 131072 /* data=, key= and value= each, decoded */
#define BP_QUERY_FILTER_MAX_PAIRS 64     /* pairs in data= */
#define BP_QUERY_PAGE_MAX 1000000000LL   /* page=N beyond is refused: deep pages should use cursors */
#define BP_QUERY_OFFSET_MAX 100000LL     /* rows a page number may skip ((page - 1) * page_size); beyond: cursor */
#define BP_QUERY_MAX_PARAMS 16           /* SQL parameters of one statement */

/* Why a query-string value was refused: the parameter's name (static) and a plain English message. */
typedef struct bp_query_error {
    const char *param;
    char message[256];
} bp_query_error_t;

/* A containment filter: matches when data @> alts[0] OR data @> alts[1] ... (nalts of them, all
 * different); nalts == 0 means no filter. Each alt is a JSON array text (malloc'd, owned). Clear with
 * bp_query_filter_clear. */
#define BP_QUERY_MAX_ALTS 2
typedef struct bp_query_filter {
    size_t nalts;
    char *alts[BP_QUERY_MAX_ALTS];
} bp_query_filter_t;

typedef enum bp_count_mode {
    BP_COUNT_AUTO = 0, /* exact up to the cap, an estimate beyond (the default) */
    BP_COUNT_EXACT,    /* always exact: may be slow, bounded by the statement timeout */
    BP_COUNT_ESTIMATE, /* the planner's estimate only */
    BP_COUNT_NONE,     /* no count: "count": null */
} bp_count_mode_t;

/* A parsed list request (GET /api/v1/objects/ or /api/v1/batches/). Clear with bp_query_list_clear. */
typedef struct bp_query_list {
    bp_query_filter_t filter;
    char *batch_id;   /* objects only: batch_id=..., malloc'd, or NULL */
    long long page;   /* page=N (1-based), or 0 when absent (then keyset pages) */
    long long page_size;
    bp_count_mode_t count;
    int has_cursor;   /* cursor=... given: page is ignored */
    bp_cursor_t cursor;
    long long count_exact_max; /* count=exact counts at most this many matches (0: the count cap) */
} bp_query_list_t;

/* A statement ready for PQsendQueryParams: text and nparams text parameters (malloc'd, owned; none
 * is NULL). Clear with bp_sql_clear. */
typedef struct bp_sql {
    char *text;
    int nparams;
    char *params[BP_QUERY_MAX_PARAMS];
    /* One plan suits every value of the parameters (no data= filter: the page follows an index in its
     * order, the count reads one counter), so the statement is worth preparing: parsing and planning
     * a list cost more than running it. A data= filter needs a plan made for its values (a rare pair
     * through the GIN index, a common one along the order): it goes unnamed, planned each time. */
    int plan_free;
} bp_sql_t;

/* Build the filter from the decoded values of data=, key= and value= (each NULL when absent; not
 * necessarily NUL-terminated). out is cleared first. Returns 0, or -1 with e naming the parameter:
 * data that is not JSON, not an object, has a repeated or empty key, a nested value, more than
 * BP_QUERY_FILTER_MAX_PAIRS pairs; an empty key=; anything over BP_QUERY_FILTER_MAX_BYTES. */
int bp_query_parse_filter(const char *data, size_t datalen, const char *key, size_t keylen, const char *value,
                          size_t valuelen, bp_query_filter_t *out, bp_query_error_t *e) BP_MUST_CHECK;

/* Free the alternatives; accepts NULL. */
void bp_query_filter_clear(bp_query_filter_t *f);

/* page=: a whole number 1..BP_QUERY_PAGE_MAX, digits only. Returns 0 or -1 with e. */
int bp_query_parse_page(const char *s, size_t len, long long *out, bp_query_error_t *e) BP_MUST_CHECK;

/* A page number may skip at most BP_QUERY_OFFSET_MAX rows: an OFFSET costs reading every row it skips.
 * Returns 0, or -1 with e (param "page") telling to follow the next links (cursor=) instead. */
int bp_query_check_offset(long long page, long long page_size, bp_query_error_t *e) BP_MUST_CHECK;

/* page_size=: a whole number 1..max, digits only. Returns 0 or -1 with e. */
int bp_query_parse_page_size(const char *s, size_t len, long long max, long long *out,
                             bp_query_error_t *e) BP_MUST_CHECK;

/* count=: auto, exact, estimate or none. Returns 0 or -1 with e. */
int bp_query_parse_count(const char *s, size_t len, bp_count_mode_t *out, bp_query_error_t *e) BP_MUST_CHECK;

/* Free what a list request owns and zero it; accepts NULL. */
void bp_query_list_clear(bp_query_list_t *q);

/* The page statement of GET /api/v1/objects/. Result: at least one row; column 0 is the count (NULL
 * with count=none), the last column its exactness ("t"/"f"), both from bp_count_objects (migration
 * 007: counters kept by the transactions that change the data; count_cap bounds the matches read to
 * count exactly what no counter answers alone, count_exact_max the same for count=exact). Then per
 * object (NULL in the one row of an empty page): 1 id, 2 object_id, 3 batch_id, 4 data (jsonb text),
 * 5 created_at, 6 updated_at (ISO 8601 UTC). Up to page_size + 1 rows, in page order for forward
 * pages and reversed for backward cursor pages (the extra row tells "more").
 * Returns 0, or -1 when out of memory. */
int bp_query_sql_objects(const bp_query_list_t *q, long long count_cap, bp_sql_t *out) BP_MUST_CHECK;

/* The page statement of GET /api/v1/batches/ (filter: batches with at least one object matching).
 * Columns: 0 count (as above, from bp_count_batches), 1 batch_id, 2 created_at in microseconds (the
 * keyset), 3 created_at, 4 updated_at, 5 object_count (from the batch's counter), 6 the count's
 * exactness. Same row rules. Returns 0, or -1 when out of memory. */
int bp_query_sql_batches(const bp_query_list_t *q, long long count_cap, bp_sql_t *out) BP_MUST_CHECK;

/* EXPLAIN (FORMAT JSON) of the rows the list's filter matches: the planner's estimate of the count
 * (the lists count with the counters now; kept for tools and the fuzz target).
 * objects selects the list (1: objects, 0: batches). Returns 0, or -1 when out of memory. */
int bp_query_sql_estimate(const bp_query_list_t *q, int objects, bp_sql_t *out) BP_MUST_CHECK;

/* "Plan Rows" of the top plan node in EXPLAIN (FORMAT JSON) output; -1 if it cannot be read. */
long long bp_query_plan_rows(const char *explain_json);

/* Free the text and parameters; accepts NULL. */
void bp_sql_clear(bp_sql_t *s);

/* The SQL expression rendering a timestamptz column as ISO 8601 UTC with microseconds
 * ("2024-05-01T12:00:00.123456Z"), for the statements of the read path. */
#define BP_SQL_ISO8601(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

#endif
