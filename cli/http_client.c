/* http_client.c - the CLI's small HTTP client for the batchpipe API (libcurl): see http_client.h.
 * No state of its own: every request is an easy handle set up the same way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"

#define GET_TRIES 3
#define BACKOFF_FIRST_S 0.5
#define BACKOFF_MAX_S 30.0
#define RETRY_AFTER_MAX_S 60

int cli_http_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void cli_http_cleanup(void)
{
    curl_global_cleanup();
}

void cli_http_response_reset(cli_http_response_t *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
    resp->retry_after_s = -1;
}

char *cli_http_url(const bp_config_t *cfg, const char *path_and_query, char *err, size_t errlen)
{
    const char *base = cfg->api_url;
    if (strncasecmp(base, "http://", 7) != 0 && strncasecmp(base, "https://", 8) != 0) {
        snprintf(err, errlen, "BP_API_URL must start with http:// or https://");
        return NULL;
    }
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    size_t n = blen + strlen(path_and_query) + 1;
    char *url = malloc(n);
    if (url == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(url, n, "%.*s%s", (int)blen, base, path_and_query);
    return url;
}

char *cli_http_escape(const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(len * 3 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}

void cli_http_display_url(const char *url, char *buf, size_t n)
{
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end != NULL ? scheme_end + 3 : url;
    size_t auth_len = strcspn(host, "/?#");
    const char *at = memchr(host, '@', auth_len);
    if (at == NULL)
        snprintf(buf, n, "%s", url);
    else
        snprintf(buf, n, "%.*s****%s", (int)(host - url), url, at);
}

/* libcurl's write callback: append to the response, refusing (ending the transfer) beyond the cap. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    cli_http_response_t *resp = userdata;
    size_t n = size * nmemb;
    if (n == 0)
        return 0;
    if (resp->len + n > (size_t)CLI_HTTP_MAX_RESPONSE) {
        snprintf(resp->error, sizeof(resp->error), "the response is larger than %ld MiB",
                 CLI_HTTP_MAX_RESPONSE / (1024 * 1024));
        return 0; /* CURLE_WRITE_ERROR */
    }
    char *grown = realloc(resp->body, resp->len + n + 1);
    if (grown == NULL) {
        snprintf(resp->error, sizeof(resp->error), "out of memory reading the response");
        return 0;
    }
    memcpy(grown + resp->len, data, n);
    resp->len += n;
    grown[resp->len] = '\0';
    resp->body = grown;
    return n;
}

CURL *cli_http_easy(const bp_config_t *cfg, const char *url, const char *content_type, long timeout_s,
                    cli_http_response_t *resp, struct curl_slist **headers)
{
    *headers = NULL;
    CURL *easy = curl_easy_init();
    if (easy == NULL)
        return NULL;
    struct curl_slist *list = NULL, *grown;
    char line[2048];
    if (cfg->api_key[0] != '\0') {
        /* the key lives only in this header list (never in a URL or a message) */
        snprintf(line, sizeof(line), "Authorization: Bearer %s", cfg->api_key);
        grown = curl_slist_append(list, line);
        explicit_bzero(line, sizeof(line));
        if (grown == NULL)
            goto fail;
        list = grown;
    }
    if (content_type != NULL) {
        snprintf(line, sizeof(line), "Content-Type: %s", content_type);
        if ((grown = curl_slist_append(list, line)) == NULL)
            goto fail;
        list = grown;
        /* no "Expect: 100-continue" round trip before bodies over 1 MB */
        if ((grown = curl_slist_append(list, "Expect:")) == NULL)
            goto fail;
        list = grown;
    }
    if ((grown = curl_slist_append(list, "Accept: application/json")) == NULL)
        goto fail;
    list = grown;
    resp->error[0] = '\0';
    if (curl_easy_setopt(easy, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, resp) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, resp->error) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, CLI_HTTP_CONNECT_TIMEOUT_S) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_TIMEOUT, timeout_s) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_USERAGENT, "batchpipe-cli") != CURLE_OK)
        goto fail;
    *headers = list;
    return easy;
fail:
    curl_slist_free_all(list);
    curl_easy_cleanup(easy);
    return NULL;
}

void cli_http_finish(CURL *easy, CURLcode code, cli_http_response_t *resp)
{
    long status = 0;
    curl_off_t retry_after = -1;
    resp->code = code;
    if (code == CURLE_OK && curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK)
        resp->status = status;
    else
        resp->status = 0;
    if (resp->status != 0 && curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
        retry_after > 0)
        resp->retry_after_s = (long long)retry_after;
    else
        resp->retry_after_s = -1;
    if (code != CURLE_OK && resp->error[0] == '\0')
        snprintf(resp->error, sizeof(resp->error), "%s", curl_easy_strerror(code));
}

int cli_http_retriable(const cli_http_response_t *resp)
{
    switch (resp->status) {
    case 429:
    case 502:
    case 503:
    case 504:
        return 1;
    case 0:
        break;
    default:
        return 0;
    }
    switch (resp->code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return 1;
    default:
        return 0;
    }
}

double cli_http_backoff_s(const cli_http_response_t *resp, int attempt)
{
    double d = BACKOFF_FIRST_S;
    for (int i = 1; i < attempt && d < BACKOFF_MAX_S; i++)
        d *= 2;
    if (d > BACKOFF_MAX_S)
        d = BACKOFF_MAX_S;
    /* jitter of up to +25% so that concurrent retries do not come back in step */
    static unsigned seed;
    if (seed == 0)
        seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    d += d * 0.25 * ((double)(rand_r(&seed) % 1000) / 1000.0);
    if (resp->retry_after_s > 0) {
        long long ra_s = resp->retry_after_s < RETRY_AFTER_MAX_S ? resp->retry_after_s : RETRY_AFTER_MAX_S;
        double ra = (double)ra_s;
        if (ra > d)
            d = ra;
    }
    return d;
}

int cli_http_get(const bp_config_t *cfg, const char *url, cli_http_response_t *resp)
{
    for (int attempt = 1;; attempt++) {
        cli_http_response_reset(resp);
        struct curl_slist *headers = NULL;
        CURL *easy = cli_http_easy(cfg, url, NULL, 60L, resp, &headers);
        if (easy == NULL) {
            snprintf(resp->error, sizeof(resp->error), "out of memory");
            return -1;
        }
        CURLcode code = curl_easy_perform(easy);
        cli_http_finish(easy, code, resp);
        curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
        if (resp->status == 0)
            return -1; /* a read fails fast when the API is unreachable: there is nothing to lose */
        if (attempt >= GET_TRIES || !cli_http_retriable(resp))
            return 0;
        double wait = cli_http_backoff_s(resp, attempt);
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* Append text to f with control characters (newlines from server messages) made spaces. */
static void put_clean(FILE *f, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        fputc(c < 0x20 || c == 0x7f ? ' ' : c, f);
    }
}

static void put_clean_str(FILE *f, const char *s)
{
    put_clean(f, s, strlen(s));
}

/* The members of a problem+json body after its detail: every violation of errors, then how many more. */
static void put_problem(FILE *f, const json_t *doc, long status)
{
    const char *title = json_string_value(json_object_get(doc, "title"));
    const char *detail = json_string_value(json_object_get(doc, "detail"));
    const json_t *errors = json_object_get(doc, "errors");
    size_t nerr = json_is_array(errors) ? json_array_size(errors) : 0;
    int sep = 0;
    if (nerr > 0) {
        /* the violations say it all; the detail only summarizes them ("4 problems found; see errors") */
        for (size_t i = 0; i < nerr; i++) {
            const json_t *e = json_array_get(errors, i);
            const char *ptr = json_string_value(json_object_get(e, "pointer"));
            const char *msg = json_string_value(json_object_get(e, "message"));
            if (sep)
                fputs("; ", f);
            if (ptr != NULL && ptr[0] != '\0') {
                put_clean_str(f, ptr);
                fputs(": ", f);
            }
            put_clean_str(f, msg != NULL ? msg : "?");
            sep = 1;
        }
        const json_t *total = json_object_get(doc, "errors_total");
        if (json_is_integer(total) && (size_t)json_integer_value(total) > nerr)
            fprintf(f, "; and %lld more", (long long)json_integer_value(total) - (long long)nerr);
        return;
    }
    if (detail != NULL && detail[0] != '\0')
        put_clean_str(f, detail);
    else if (title != NULL)
        put_clean_str(f, title);
    else
        fprintf(f, "HTTP %ld", status);
}

char *cli_http_problem_text(const cli_http_response_t *resp, const char *url)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL)
        return NULL;
    if (resp->status == 0) {
        char shown[1024];
        cli_http_display_url(url, shown, sizeof(shown));
        fprintf(f, "cannot reach %s: ", shown);
        put_clean_str(f, resp->error[0] != '\0' ? resp->error : curl_easy_strerror(resp->code));
    } else {
        json_t *doc = resp->body != NULL ? cli_http_json(resp->body, resp->len) : NULL;
        if (json_is_object(doc) &&
            (json_object_get(doc, "detail") != NULL || json_object_get(doc, "title") != NULL)) {
            put_problem(f, doc, resp->status);
        } else {
            fprintf(f, "HTTP %ld", resp->status);
            if (resp->len > 0) {
                fputs(": ", f);
                put_clean(f, resp->body, resp->len < 200 ? resp->len : 200);
                if (resp->len > 200)
                    fputs("...", f);
            }
        }
        json_decref(doc);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

json_t *cli_http_json(const char *text, size_t len)
{
    json_t *doc = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    if (doc == NULL)
        doc = json_loadb(text, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
    return doc;
}
