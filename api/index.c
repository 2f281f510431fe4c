/* index.c - GET /api/v1/ (the list of endpoints with their URLs, like the browsable root of the API
 * this service replaces) and GET /healthz. */
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
    return bp_http_send_json(req, 200, NULL, body);
}

/* Liveness: the process and this loop thread answer. Readiness (/readyz) also checks the services. */
static int get_healthz(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return bp_http_send_json(req, 200, NULL, json_pack("{s:s}", "status", "ok"));
}

const bp_route_t bp_index_routes[] = {
    {"GET", "/api/v1/", get_root},
    {"GET", "/healthz", get_healthz},
    {NULL, NULL, NULL},
};
