/* http.c - JSON and problem+json responses, query strings and links for every route.
 * Bodies are built with jansson and copied once into the request's pool. */
#include "http.h"

#include "bp_utf8.h"
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

const char *bp_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

void bp_http_add_header(h2o_req_t *req, const char *name, const char *value)
{
    /* h2o keeps the pointers it is given: copy the value into the pool, as http.h promises */
    h2o_iovec_t v = h2o_strdup(&req->pool, value, strlen(value));
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, v.base, v.len);
}

static int send_body(h2o_req_t *req, int status, const char *reason, const char *ctype, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL) {
        static const char oom[] = "{\"title\":\"Internal Server Error\",\"status\":500}";
        req->res.status = 500;
        req->res.reason = "Internal Server Error";
        req->res.content_length = sizeof(oom) - 1;
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/problem+json"));
        h2o_send_inline(req, oom, sizeof(oom) - 1);
        return 0;
    }
    size_t len = strlen(text);
    req->res.status = status;
    req->res.reason = reason != NULL ? reason : bp_http_reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_send_inline(req, text, len); /* copies */
    free(text);
    return 0;
}

int bp_http_send_json(h2o_req_t *req, int status, const char *reason, json_t *body)
{
    return send_body(req, status, reason, "application/json", body);
}

int bp_http_send_empty(h2o_req_t *req, int status, const char *reason)
{
    req->res.status = status;
    req->res.reason = reason != NULL ? reason : bp_http_reason(status);
    req->res.content_length = 0;
    h2o_send_inline(req, "", 0);
    return 0;
}

int bp_http_problem(h2o_req_t *req, int status, const char *title, const char *detail, json_t *extra)
{
    json_t *body = json_object();
    json_object_set_new(body, "type", json_string("about:blank"));
    json_object_set_new(body, "title", json_string(title));
    json_object_set_new(body, "status", json_integer(status));
    if (detail != NULL) {
        json_t *d = json_string(detail);
        if (d == NULL) { /* it quotes client bytes that are not UTF-8: show them as '?' */
            char *copy = h2o_mem_alloc_pool(&req->pool, strlen(detail) + 1);
            strcpy(copy, detail);
            bp_utf8_sanitize(copy);
            d = json_string(copy);
        }
        json_object_set_new(body, "detail", d);
    }
    if (extra != NULL) {
        json_object_update(body, extra);
        json_decref(extra);
    }
    return send_body(req, status, NULL, "application/problem+json", body);
}

int bp_http_problem_violations(h2o_req_t *req, int status, const char *title, const bp_violations_t *v)
{
    char detail[sizeof(v->items[0].pointer) + sizeof(v->items[0].message) + 8];
    if (v->count == 1 && v->total == 1)
        snprintf(detail, sizeof(detail), "%s%s%s", v->items[0].pointer[0] ? v->items[0].pointer : "",
                 v->items[0].pointer[0] ? ": " : "", v->items[0].message);
    else
        snprintf(detail, sizeof(detail), "%zu problems found%s; see errors", v->total,
                 v->total > v->count ? " (the first ones listed)" : "");
    json_t *extra = json_object();
    json_object_set_new(extra, "errors", bp_violations_to_json(v));
    if (v->total > v->count)
        json_object_set_new(extra, "errors_total", json_integer((json_int_t)v->total));
    return bp_http_problem(req, status, title, detail, extra);
}

h2o_iovec_t bp_http_query(h2o_req_t *req)
{
    if (req->query_at == SIZE_MAX)
        return h2o_iovec_init(NULL, 0);
    return h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long bp_http_percent_decode(const char *src, size_t srclen, char *dst, int plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < srclen; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= srclen)
                return -1;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            dst[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            dst[o++] = ' ';
        } else {
            dst[o++] = c;
        }
    }
    dst[o] = '\0';
    return (long)o;
}

int bp_http_query_param(h2o_req_t *req, const char *name, char **out, size_t *outlen)
{
    h2o_iovec_t q = bp_http_query(req);
    size_t nlen = strlen(name);
    int found = 0;
    const char *p = q.base, *end = q.base + q.len;
    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq != NULL ? eq : stop;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq != NULL ? eq + 1 : stop;
            size_t vlen = (size_t)(stop - v);
            char *buf = h2o_mem_alloc_pool(&req->pool, vlen + 1);
            long n = bp_http_percent_decode(v, vlen, buf, 1);
            if (n < 0)
                return -1;
            *out = buf;
            *outlen = (size_t)n;
            found = 1;
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    return found;
}

int bp_http_path_match(const char *pattern, const char *path, size_t len, const char **seg, size_t *seglen)
{
    size_t plen = strlen(pattern);
    if (len > 1 && path[len - 1] == '/')
        len--;
    if (plen > 1 && pattern[plen - 1] == '/')
        plen--;
    size_t i = 0, j = 0;
    *seg = NULL;
    *seglen = 0;
    while (i < plen && j < len) {
        if (pattern[i] == '{' && i + 1 < plen && pattern[i + 1] == '}') {
            size_t start = j;
            while (j < len && path[j] != '/')
                j++;
            if (j == start)
                return 0;
            *seg = path + start;
            *seglen = j - start;
            i += 2;
            continue;
        }
        if (pattern[i] != path[j])
            return 0;
        i++;
        j++;
    }
    return i == plen && j == len;
}

char *bp_http_percent_encode(h2o_req_t *req, const char *src, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = h2o_mem_alloc_pool(&req->pool, len * 3 + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

static int same_name(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && alen > 0 && strncasecmp(a, b, alen) == 0;
}

int bp_http_host_allowed(const char *host, size_t len, const char *listen_host, long long listen_port,
                         const char *allowed)
{
    /* split name and port: "[v6]:port", "name:port", or without the port */
    const char *name = host, *port = NULL;
    size_t namelen = len, portlen = 0;
    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (close == NULL)
            return 0;
        name = host + 1;
        namelen = (size_t)(close - name);
        size_t rest = len - (size_t)(close + 1 - host);
        if (rest > 0) {
            if (close[1] != ':')
                return 0;
            port = close + 2, portlen = rest - 1;
        }
    } else {
        const char *colon = memchr(host, ':', len);
        if (colon != NULL) {
            if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - host)) != NULL)
                return 0; /* an unbracketed IPv6 address is not a Host */
            namelen = (size_t)(colon - host);
            port = colon + 1, portlen = len - namelen - 1;
        }
    }
    if (namelen == 0 || (port != NULL && portlen == 0))
        return 0;
    for (size_t i = 0; i < portlen; i++)
        if (port[i] < '0' || port[i] > '9')
            return 0;
    char ours[24];
    snprintf(ours, sizeof(ours), "%lld", listen_port);
    int our_port = port == NULL || same_name(port, portlen, ours, strlen(ours));
    static const char *const loopback[] = {"localhost", "127.0.0.1", "::1"};
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++)
        if (our_port && same_name(name, namelen, loopback[i], strlen(loopback[i])))
            return 1;
    if (our_port && listen_host != NULL && strcmp(listen_host, "0.0.0.0") != 0 && strcmp(listen_host, "::") != 0 &&
        same_name(name, namelen, listen_host, strlen(listen_host)))
        return 1;
    /* the allow-list: "name" (any port) or "name:port" */
    for (const char *p = allowed != NULL ? allowed : ""; *p != '\0';) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',' && *p != ' ')
            p++;
        size_t elen = (size_t)(p - start);
        if (elen == 0)
            continue;
        if (same_name(start, elen, host, len) || same_name(start, elen, name, namelen))
            return 1;
    }
    return 0;
}

int bp_http_request_host_allowed(h2o_req_t *req)
{
    const bp_config_t *cfg = bp_thread_of(req)->api->cfg;
    h2o_iovec_t host = req->authority;
    /* without a Host header (HTTP/1.0) h2o puts the host configuration's own name there */
    if (host.len == 0 || (req->hostconf != NULL && host.base == req->hostconf->authority.hostport.base))
        return 1;
    if (bp_http_host_allowed(host.base, host.len, cfg->http_host, cfg->http_port, cfg->allowed_hosts))
        return 1;
    /* the authority of BP_PUBLIC_URL: "scheme://host[:port][/...]" */
    const char *pub = strstr(cfg->public_url, "://");
    if (pub == NULL)
        return 0;
    pub += 3;
    size_t publen = strcspn(pub, "/?#");
    return same_name(pub, publen, host.base, host.len);
}

const char *bp_http_base_url(h2o_req_t *req, const char *public_url)
{
    if (public_url != NULL && public_url[0] != '\0')
        return public_url;
    h2o_iovec_t host = req->authority;
    /* the Host header is the client's: absolute links only for a name of this server, else relative */
    if (host.len == 0 || (req->hostconf != NULL && host.base == req->hostconf->authority.hostport.base) ||
        !bp_http_request_host_allowed(req))
        return "";
    const char *scheme = req->scheme == &H2O_URL_SCHEME_HTTPS ? "https" : "http";
    char *out = h2o_mem_alloc_pool(&req->pool, strlen(scheme) + 3 + host.len + 1);
    sprintf(out, "%s://%.*s", scheme, (int)host.len, host.base);
    return out;
}

const char *bp_http_request_id(h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    char *id = NULL;
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        int ok = v.len > 0 && v.len <= 128;
        for (size_t k = 0; ok && k < v.len; k++)
            ok = v.base[k] > 0x20 && v.base[k] < 0x7f && v.base[k] != '"' && v.base[k] != '\\';
        if (ok)
            id = h2o_mem_alloc_pool(&req->pool, v.len + 1), memcpy(id, v.base, v.len), id[v.len] = '\0';
    }
    if (id == NULL) {
        unsigned char r[16];
        if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
            memset(r, 0, sizeof(r));
        id = h2o_mem_alloc_pool(&req->pool, 33);
        for (int k = 0; k < 16; k++)
            sprintf(id + 2 * k, "%02x", r[k]);
    }
    return id;
}
