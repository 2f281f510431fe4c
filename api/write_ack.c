/* write_ack.c - the answer to a POST the broker acknowledged: 202 Accepted with where the message went
 * and a Location to poll. Read-your-writes (?wait=) will hook in here; see bp_write_acked in write.h. */
#include "write.h"

#include <stdio.h>
#include <string.h>

#include "http.h"

/* base + "/api/v1/<collection>/" + percent-encoded id + "/" in the request pool. */
static const char *resource_url(h2o_req_t *req, const char *base, const char *collection, const char *id,
                                size_t idlen)
{
    const char *enc = bp_http_percent_encode(req, id, idlen);
    size_t n = strlen(base) + strlen(collection) + strlen(enc) + 16;
    char *url = h2o_mem_alloc_pool(&req->pool, n);
    snprintf(url, n, "%s/api/v1/%s/%s/", base, collection, enc);
    return url;
}

int bp_write_acked(bp_api_thread_t *t, h2o_req_t *req, const bp_write_ack_t *ack)
{
    /* ?wait= (ack->wait_s > 0) is accepted and validated, but not waited for yet: see write.h */
    const char *base = bp_http_base_url(req, t->api->cfg->public_url);
    json_t *body = json_object();
    json_object_set_new(body, "batch_id", json_stringn(ack->batch_id, ack->batch_id_len));
    if (ack->object_id != NULL) {
        json_object_set_new(body, "object_id", json_stringn(ack->object_id, ack->object_id_len));
        bp_http_add_header(req, "location",
                           resource_url(req, base, "objects", ack->object_id, ack->object_id_len));
    } else {
        bp_http_add_header(req, "location",
                           resource_url(req, base, "batches", ack->batch_id, ack->batch_id_len));
    }
    json_object_set_new(body, "objects", json_integer((json_int_t)ack->objects));
    json_object_set_new(body, "partition", json_integer(ack->partition));
    json_object_set_new(body, "offset", json_integer(ack->offset));
    json_object_set_new(body, "request_id", json_string(ack->request_id));
    json_object_set_new(body, "status", json_string("accepted"));
    return bp_http_send_json(req, 202, NULL, body);
}
