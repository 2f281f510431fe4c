/* index.c - GET /api/v1/ (the list of endpoints with their URLs, like the browsable root of the API
 * this service replaces), the probes GET /healthz and /readyz (health.c), and GET /metrics. */
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "http.h"
#include "router.h"

static int get_root(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    const char *base = bp_http_base_url(req, t->api->cfg->public_url);
    json_t *body = json_object();
    char url[1024];
    snprintf(url, sizeof(url), "%s/api/v1/batches/", base);
    json_object_set_new(body, "batches", json_string(url));
    snprintf(url, sizeof(url), "%s/api/v1/objects/", base);
    json_object_set_new(body, "objects", json_string(url));
    snprintf(url, sizeof(url), "%s/api/v1/openapi.json", base);
    json_object_set_new(body, "openapi", json_string(url));
    snprintf(url, sizeof(url), "%s/api/v1/stats/", base);
    json_object_set_new(body, "stats", json_string(url));
    snprintf(url, sizeof(url), "%s/console/", base);
    json_object_set_new(body, "console", json_string(url));
    return bp_http_send_json(req, 200, NULL, body);
}

/* Liveness: the process and this loop thread answer. Readiness (/readyz) also checks the services. */
static int get_healthz(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return bp_http_send_json(req, 200, NULL, json_pack("{s:s}", "status", "ok"));
}

/* Prometheus text format: the registry (requests, latencies, modules' gauges). */
static int get_metrics(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    char *text = bp_metrics_render(t->api->metrics);
    if (text == NULL)
        return bp_http_problem(req, 503, "Service Unavailable", "out of memory rendering metrics", NULL);
    size_t len = strlen(text);
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    h2o_send_inline(req, text, len);
    free(text);
    return 0;
}

const bp_route_t bp_index_routes[] = {
    {"GET", "/metrics", get_metrics},
    {"GET", "/api/v1/", get_root},
    {"GET", "/healthz", get_healthz},
    {"GET", "/readyz", bp_health_readyz},
    {NULL, NULL, NULL},
};
