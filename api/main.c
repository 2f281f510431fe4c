/* main.c - batchpipe-api: wires configuration, logging and the server together, then waits for
 * SIGINT/SIGTERM. Everything else lives in its own module. */
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bp_config.h"
#include "bp_log.h"
#include "auth.h"
#include "errors.h"
#include "ratelimit.h"
#include "replicas.h"
#include "stats.h"
#include "tls.h"
#include "watermarks.h"
#include "router.h"
#include "budget.h"
#include "keybudget.h"
#include "server.h"

static const char usage[] = "usage: batchpipe-api [settings]\n"
                            "\n"
                            "The batchpipe HTTP front end: takes batches (POST), publishes them to Kafka,\n"
                            "and serves queries from PostgreSQL. Every setting is also read from its\n"
                            "environment variable.\n";

/* set by main (sigwait, no handler) and read by the loop threads: an atomic, not a signal flag */
static atomic_int stop_flag;

/* Secure by default: without API keys, only this machine may connect. An empty BP_HTTP_HOST becomes
 * 0.0.0.0 with keys and 127.0.0.1 without; another address without keys needs BP_AUTH=off, which is
 * logged as a warning. Returns 0, or -1 with err when the settings contradict each other. */
static int choose_listen_address(bp_config_t *cfg, int have_keys, char *err, size_t errlen)
{
    int auth_off = strcmp(cfg->auth, "off") == 0;
    if (auth_off && have_keys) {
        snprintf(err, errlen, "BP_AUTH=off and BP_API_KEYS_FILE are both set: choose one");
        return -1;
    }
    if (cfg->http_host[0] == '\0' && bp_config_set(cfg, "http-host", have_keys ? "0.0.0.0" : "127.0.0.1", err, errlen) != 0)
        return -1;
    if (have_keys)
        return 0;
    if (bp_server_host_is_loopback(cfg->http_host)) {
        bp_log_info("no API keys (BP_API_KEYS_FILE): listening on %s only; to serve other machines, set "
                    "BP_API_KEYS_FILE (or BP_AUTH=off to serve them without authentication)",
                    cfg->http_host);
        return 0;
    }
    if (!auth_off) {
        snprintf(err, errlen,
                 "BP_HTTP_HOST=%s is not a loopback address and no API keys are configured: anyone who reaches "
                 "the port could read, post and delete. Set BP_API_KEYS_FILE (docs/SECURITY.md), or BP_AUTH=off "
                 "to serve without authentication on purpose",
                 cfg->http_host);
        return -1;
    }
    bp_log_warn("BP_AUTH=off: serving %s without authentication; anyone who reaches port %lld can read, post "
                "and delete (docs/SECURITY.md)",
                cfg->http_host, cfg->http_port);
    return 0;
}

static double gauge_body_bytes(void *arg)
{
    return (double)bp_budget_held(arg);
}

int main(int argc, char **argv)
{
    bp_config_t cfg;
    char err[1024];
    int rc = bp_config_load(&cfg, BP_FOR_API, usage, argc, argv, NULL, err, sizeof(err));
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "batchpipe-api: %s\n", err);
        bp_config_free(&cfg);
        return rc < 0 ? 2 : 0;
    }
    bp_log_level_t level = BP_LOG_INFO;
    (void)bp_log_level_parse(cfg.log_level, &level);
    bp_log_init("api", level);
    /* glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), after
     * which request bodies and their copies come from the heap and their pages stay with the process;
     * a fixed threshold keeps every block of 128 KiB or more (glibc's initial threshold) in its own
     * mapping, returned when freed */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);

    /* only the main thread takes the stop signals: block them before any thread starts */
    sigset_t stopsigs;
    sigemptyset(&stopsigs);
    sigaddset(&stopsigs, SIGINT);
    sigaddset(&stopsigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stopsigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* static: the loops and their connections stay reachable until exit (h2o 2.2.5 cannot dispose a
     * context that still has connections), so leak checkers see no loss */
    static bp_api_t api;
    api.cfg = &cfg;
    api.stop = &stop_flag;
    if ((api.metrics = bp_metrics_new()) == NULL)
        goto out_of_memory;
    /* counted on every POST: looked up once */
    if ((api.objects_accepted = bp_stats_objects_accepted(api.metrics)) == NULL)
        goto out_of_memory;
    if (cfg.api_keys_file[0] != '\0' && (api.auth = bp_auth_load(cfg.api_keys_file, err, sizeof(err))) == NULL)
        goto fail;
    if (choose_listen_address(&cfg, api.auth != NULL, err, sizeof(err)) != 0)
        goto fail;
    if (cfg.rate_limit > 0 && (api.ratelimit = bp_ratelimit_new((double)cfg.rate_limit, (double)cfg.rate_burst)) == NULL)
        goto out_of_memory;
    if (cfg.public_rate_limit > 0 &&
        (api.public_ratelimit = bp_ratelimit_new((double)cfg.public_rate_limit, 2.0 * (double)cfg.public_rate_limit)) == NULL)
        goto out_of_memory;
    if (cfg.tls_cert[0] != '\0' &&
        (api.ssl_ctx = bp_tls_context(cfg.tls_cert, cfg.tls_key, cfg.http2_tls != 0, err, sizeof(err))) == NULL)
        goto fail;
    api.nthreads = cfg.http_threads > 0 ? (int)cfg.http_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (api.nthreads < 1)
        api.nthreads = 1;

    h2o_config_init(&api.globalconf);
    api.globalconf.max_request_entity_size = (size_t)cfg.max_body_bytes;
    /* a request's headers and body must arrive within this (h2o's timer is not reset by each read) */
    api.globalconf.http1.req_timeout = (uint64_t)cfg.body_timeout_ms;
    api.globalconf.http2.idle_timeout = (uint64_t)cfg.body_timeout_ms;
    /* HTTP/2 carries many buffered bodies on one connection: off unless asked for. Behind TLS, the
     * HTTP/1 side's upgrade (prior knowledge inside TLS) follows BP_HTTP2_TLS, as ALPN does. */
    api.globalconf.http1.upgrade_to_http2 = api.ssl_ctx != NULL ? cfg.http2_tls != 0 : cfg.http2_cleartext != 0;
    api.globalconf.http2.max_concurrent_requests_per_connection = (size_t)cfg.http2_max_streams;
    if ((api.budget = bp_budget_new((size_t)cfg.body_budget_bytes)) == NULL)
        goto out_of_memory;
    if (cfg.client_body_budget_bytes > 0 &&
        (api.keybudget = bp_keybudget_new((size_t)cfg.client_body_budget_bytes)) == NULL)
        goto out_of_memory;
    bp_metrics_gauge_fn(api.metrics, "bp_http_body_bytes",
                        "Request-body bytes held: bodies being read and bodies being parsed.", NULL,
                        gauge_body_bytes, api.budget);
    api.globalconf.server_name = h2o_iovec_init(H2O_STRLIT("batchpipe"));
    h2o_hostconf_t *hostconf = h2o_config_register_host(&api.globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    bp_router_register(hostconf, api.metrics);
    bp_errors_register(hostconf, cfg.max_body_bytes);

    if ((api.watermarks = bp_watermarks_new(&cfg, err, sizeof(err))) == NULL)
        goto fail;
    bp_watermarks_register_metrics(api.watermarks, api.metrics);
    if ((api.replicas = bp_replicas_new(&cfg, api.metrics, err, sizeof(err))) == NULL)
        goto fail;
    if (bp_server_run(&api, err, sizeof(err)) != 0)
        goto fail;
    bp_log_info("authentication %s, rate limit %s, %s", api.auth ? "on" : "off", api.ratelimit ? "on" : "off",
                api.ssl_ctx ? "TLS" : "plain HTTP");
    int sig = 0;
    sigwait(&stopsigs, &sig);
    bp_log_info("%s received: stopping (in-flight requests get up to %lld ms)",
                sig == SIGINT ? "SIGINT" : "SIGTERM", cfg.shutdown_timeout_ms);
    atomic_store(&stop_flag, 1);
    bp_watermarks_stop(api.watermarks); /* it ends while the loops drain */
    bp_replicas_stop(api.replicas);
    bp_server_join(&api);
    bp_log_info("stopped");
    h2o_config_dispose(&api.globalconf);
    rc = 0;
    goto cleanup;
out_of_memory:
    snprintf(err, sizeof(err), "out of memory");
fail: /* every way out before the server runs says why, once, the same way */
    bp_log_error("cannot start: %s", err);
    rc = 1;
cleanup:
    bp_watermarks_free(api.watermarks);
    bp_replicas_free(api.replicas);
    bp_metrics_free(api.metrics);
    bp_auth_free(api.auth);
    bp_ratelimit_free(api.ratelimit);
    bp_ratelimit_free(api.public_ratelimit);
    bp_budget_free(api.budget);
    bp_keybudget_free(api.keybudget);
    if (api.ssl_ctx != NULL)
        SSL_CTX_free(api.ssl_ctx);
    bp_config_free(&cfg);
    return rc;
}
