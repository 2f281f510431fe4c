/* main.c - batchpipe-ingest: wires configuration, logging, the worker and its health port together;
 * SIGINT/SIGTERM ask the worker to finish the transaction in hand, leave the group and exit. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "bp_config.h"
#include "bp_log.h"
#include "bp_metrics.h"
#include "health.h"
#include "stats.h"
#include "worker.h"

static const char usage[] = "usage: batchpipe-ingest [settings]\n"
                            "\n"
                            "An ingest worker: consumes batches from Kafka in a consumer group and writes each\n"
                            "one into PostgreSQL in one transaction, with the consumed offsets. Start more\n"
                            "workers to scale (up to the partition count). Every setting is also read from\n"
                            "its environment variable.\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int main(int argc, char **argv)
{
    bp_config_t cfg;
    char err[1024];
    int rc = bp_config_load(&cfg, BP_FOR_INGEST, usage, argc, argv, NULL, err, sizeof(err));
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "batchpipe-ingest: %s\n", err);
        bp_config_free(&cfg);
        return rc < 0 ? 2 : 0;
    }
    bp_log_level_t level = BP_LOG_INFO;
    (void)bp_log_level_parse(cfg.log_level, &level);
    bp_log_init("ingest", level);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    bp_metrics_t *metrics = bp_metrics_new();
    bp_ingest_stats_t *stats = metrics != NULL ? bp_ingest_stats_new(metrics, cfg.topic) : NULL;
    if (stats == NULL) {
        bp_log_error("cannot start: out of memory");
        bp_metrics_free(metrics);
        bp_config_free(&cfg);
        return 1;
    }
    bp_worker_t *worker = bp_worker_new(&cfg, stats, &stop_flag, err, sizeof(err));
    if (worker == NULL) {
        bp_log_error("cannot start: %s", err);
        bp_metrics_free(metrics);
        bp_ingest_stats_free(stats);
        bp_config_free(&cfg);
        return 1;
    }
    /* A worker whose probes cannot answer would look dead to its orchestrator: refuse to start, as the
     * API does when it cannot listen. Several workers on one host need distinct BP_HEALTH_PORTs (or 0). */
    bp_health_t *health = NULL;
    if (cfg.health_port > 0 && (health = bp_health_start(&cfg, metrics, stats, err, sizeof(err))) == NULL) {
        bp_log_error("cannot start: health port %lld: %s (set BP_HEALTH_PORT to a free port, or 0)",
                     cfg.health_port, err);
        bp_worker_free(worker);
        bp_metrics_free(metrics);
        bp_ingest_stats_free(stats);
        bp_config_free(&cfg);
        return 1;
    }
    rc = bp_worker_run(worker);
    bp_health_stop(health);
    bp_worker_free(worker);
    bp_metrics_free(metrics); /* before the stats: one of its gauges reads them */
    bp_ingest_stats_free(stats);
    bp_log_info("stopped");
    bp_config_free(&cfg);
    return rc == 0 ? 0 : 1;
}
