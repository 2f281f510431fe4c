/* http.h - answering h2o requests in batchpipe's one format: JSON bodies, RFC 9457 problem+json
 * errors, query-string access, and the base URL used for links. */
#ifndef BP_HTTP_H
#define BP_HTTP_H

#include <stddef.h>

#include <h2o.h>
#include <jansson.h>

#include "bp_payload.h"

/* Answer with a JSON body. body is stolen (decref'd here); status like 200, reason a static string.
 * Sets Content-Type and Content-Length. Returns 0 (h2o's "handled"). */
int bp_http_send_json(h2o_req_t *req, int status, const char *reason, json_t *body);

/* Answer with application/problem+json: {"type", "title", "status", "detail", ...extra}.
 * detail is copied; extra (may be NULL) is stolen and merged (e.g. {"errors": [...]}). Returns 0. */
int bp_http_problem(h2o_req_t *req, int status, const char *title, const char *detail, json_t *extra);

/* A 400 "validation failed" problem listing every violation with its pointer. Returns 0. */
int bp_http_problem_violations(h2o_req_t *req, int status, const char *title, const bp_violations_t *v);

/* Answer with no body (204). Returns 0. */
int bp_http_send_empty(h2o_req_t *req, int status, const char *reason);

/* Add a header (name is a static lowercase string, value copied into the request pool). */
void bp_http_add_header(h2o_req_t *req, const char *name, const char *value);

/* Static reason phrase for a status. */
const char *bp_http_reason(int status);

/* The query string of req (after '?'), or an empty iovec. */
h2o_iovec_t bp_http_query(h2o_req_t *req);

/* Find parameter name in the query string, percent-decoded ('+' is a space) into the request pool.
 * Returns 1 and sets *out (NUL-terminated, *outlen bytes) if present, 0 if absent, -1 if its
 * encoding is broken. If the parameter repeats, the last one wins. */
int bp_http_query_param(h2o_req_t *req, const char *name, char **out, size_t *outlen);

/* Percent-decode src into dst (dst must have srclen+1 bytes); returns the length, or -1. */
long bp_http_percent_decode(const char *src, size_t srclen, char *dst, int plus_is_space);

/* Whether path[0..len) (without the query) matches pattern: byte for byte, a trailing '/' optional on
 * either, "{}" matching one non-empty segment, which is then stored raw (still percent-encoded) in
 * *seg and *seglen (NULL and 0 for patterns without one). Pure; the router's dispatch. */
int bp_http_path_match(const char *pattern, const char *path, size_t len, const char **seg, size_t *seglen);

/* Percent-encode a query value into the request pool. */
char *bp_http_percent_encode(h2o_req_t *req, const char *src, size_t len);

/* The start of links: public_url (BP_PUBLIC_URL) when set; else "scheme://host" from the request's
 * Host header when bp_http_host_allowed says so; else "" (links are then relative: "/api/v1/...").
 * A stranger's Host never becomes a link. Pool memory or static. */
const char *bp_http_base_url(h2o_req_t *req, const char *public_url);

/* Whether req's Host header names this server for the process's settings: absent (HTTP/1.0), or
 * bp_http_host_allowed with BP_HTTP_HOST, BP_HTTP_PORT and BP_ALLOWED_HOSTS, or the host[:port] of
 * BP_PUBLIC_URL. */
int bp_http_request_host_allowed(h2o_req_t *req);

/* Whether a Host header (host[:port], [v6][:port]) names this server: a loopback name (localhost,
 * 127.0.0.1, [::1]) or listen_host (unless it is a wildcard) without a port or with listen_port, or
 * an entry of allowed (comma-separated "name" for any port, or "name:port"), case-insensitively. */
int bp_http_host_allowed(const char *host, size_t len, const char *listen_host, long long listen_port,
                         const char *allowed);

/* The request id: X-Request-Id when the client sent a sane one (<= 128 printable bytes), else a new
 * random one (32 hex digits). Pool memory; the caller echoes it as X-Request-Id. */
const char *bp_http_request_id(h2o_req_t *req);

#endif
