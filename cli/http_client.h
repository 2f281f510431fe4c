/* http_client.h - the CLI's small HTTP client for the batchpipe API (libcurl): URLs under BP_API_URL,
 * the API key as a Bearer token, bounded response bodies, retries of 429/503, and an answer or a
 * transport failure turned into one line of text. Used by post (multi interface) and get/query. */
#ifndef BP_CLI_HTTP_CLIENT_H
#define BP_CLI_HTTP_CLIENT_H

#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

#include "bp_config.h"

/* Largest response body kept (a page of 1000 big objects fits); beyond it the transfer fails. */
#define CLI_HTTP_MAX_RESPONSE (64L * 1024 * 1024)
/* Seconds to wait for a TCP (or TLS) connection. */
#define CLI_HTTP_CONNECT_TIMEOUT_S 10L

typedef struct cli_http_response {
    long status;              /* HTTP status; 0 when no answer came (see code and error) */
    char *body;               /* the body, NUL-terminated (NULL when empty); owned, see _reset */
    size_t len;               /* bytes in body */
    long long retry_after_s;  /* the Retry-After header in seconds, -1 when absent */
    CURLcode code;            /* libcurl's result of the transfer */
    char error[CURL_ERROR_SIZE]; /* libcurl's error text ("" when none) */
} cli_http_response_t;

/* libcurl's process-wide set-up and tear-down: call once at the start and the end of a subcommand.
 * cli_http_init returns 0, or -1 (then do not call cleanup). */
int cli_http_init(void);
void cli_http_cleanup(void);

/* Free the body and clear resp for another attempt. Accepts a zeroed resp. */
void cli_http_response_reset(cli_http_response_t *resp);

/* BP_API_URL (trailing slashes dropped) followed by path_and_query, which starts with '/'.
 * Returns NULL on a URL that is not http:// or https:// (err says so) or out of memory. Caller frees. */
char *cli_http_url(const bp_config_t *cfg, const char *path_and_query, char *err, size_t errlen);

/* s[0..len) percent-encoded for a path segment or a query value: every byte but A-Z a-z 0-9 - . _ ~.
 * Caller frees; NULL when out of memory. */
char *cli_http_escape(const char *s, size_t len);

/* url with any "user:password@" replaced by "****@", for messages. Writes at most n bytes into buf. */
void cli_http_display_url(const char *url, char *buf, size_t n);

/* A new easy handle for one request: url (copied by libcurl), the response into resp (which the
 * caller keeps alive until the transfer ends), the Authorization header when BP_API_KEY is set plus
 * content_type when not NULL, a total time limit of timeout_s, no redirects (the key must not follow
 * one to another host), http and https only. *headers receives the header list: free it with
 * curl_slist_free_all after curl_easy_cleanup. NULL when out of memory. */
CURL *cli_http_easy(const bp_config_t *cfg, const char *url, const char *content_type, long timeout_s,
                    cli_http_response_t *resp, struct curl_slist **headers);

/* Fill resp->status, retry_after_s and code after a transfer of easy ended with code. */
void cli_http_finish(CURL *easy, CURLcode code, cli_http_response_t *resp);

/* 1 when a POST that failed this way may be sent again: 429, 502, 503, 504, or no answer because the
 * connection failed, broke or timed out. */
int cli_http_retriable(const cli_http_response_t *resp);

/* Seconds to wait before attempt number `attempt` (1 = the first retry): 0.5 s doubling up to 30 s,
 * at least the Retry-After (capped at 60 s), with a little jitter. */
double cli_http_backoff_s(const cli_http_response_t *resp, int attempt);

/* A blocking GET of url into resp, tried again (at most 3 tries in all) on 429/502/503/504 after
 * cli_http_backoff_s. Returns 0 when an HTTP answer came (any status), -1 when none did
 * (resp->error says why). */
int cli_http_get(const bp_config_t *cfg, const char *url, cli_http_response_t *resp);

/* One line describing why resp is not a success: for no answer "cannot reach URL: curl error"; for a
 * problem+json body its detail followed by every "pointer: message" of its errors array (and how
 * many more the API counted); otherwise "HTTP status" and the start of the body. Control characters
 * are replaced by spaces. Caller frees; NULL when out of memory. */
char *cli_http_problem_text(const cli_http_response_t *resp, const char *url);

/* JSON text from the API parsed with jansson: exactly when possible, else with integers beyond
 * 64 bits read as reals (jansson refuses them, PostgreSQL prints them). NULL when not JSON.
 * Caller decrefs. */
json_t *cli_http_json(const char *text, size_t len);

#endif
