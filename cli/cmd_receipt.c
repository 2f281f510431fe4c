/* cmd_receipt.c - `batchpipe receipt TOKEN`: what became of a posted batch (GET /api/v1/receipts/{token}/),
 * the token being what `batchpipe post` printed: accepted (with the lag), applied, or dead-lettered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bp_token.h"
#include "cli.h"
#include "http_client.h"
#include "table.h"

static const char receipt_usage[] =
    "usage: batchpipe [settings] receipt TOKEN [--json]\n"
    "Show the receipt of a posted batch: TOKEN is what the API answered (token=, as batchpipe post prints\n"
    "it). The state is one of\n"
    "  accepted       in the topic, not yet applied by the ingest group (with the partition's lag)\n"
    "  applied        applied by the group BP_GROUP_ID, with its batch's link and whether the batch is\n"
    "                 still this message's (current), rewritten by a later one (superseded: which),\n"
    "                 without its objects since (changed) or deleted\n"
    "  dead_lettered  refused by the worker: the reason, SQLSTATE, the letter's place in BP_DLQ_TOPIC and\n"
    "                 the batchpipe dlq replay command that would publish it again\n"
    "  unknown        passed by the group before its dead letters were recorded (or their retention)\n"
    "  --json   the receipt exactly as the API sent it\n"
    "Exit status: 0 accepted, applied or unknown, 1 dead-lettered or the API refused or failed,\n"
    "2 usage error (also a TOKEN that is not a receipt token of BP_TOPIC).\n";

/* A member as text: strings as they are (control characters shown as '?'), numbers printed, null as "-". */
static void line(const char *label, const json_t *v)
{
    printf("%-14s ", label);
    if (json_is_string(v)) {
        for (const unsigned char *c = (const unsigned char *)json_string_value(v); *c; c++)
            putchar(*c < 0x20 || *c == 0x7f ? '?' : *c);
    } else if (json_is_integer(v)) {
        printf("%lld", (long long)json_integer_value(v));
    } else {
        printf("-");
    }
    putchar('\n');
}

/* The applied message's batch: its id, what became of it, the link (or "-" once deleted). */
static void print_batch(const json_t *r)
{
    line("batch_id:", json_object_get(r, "batch_id"));
    line("batch:", json_object_get(r, "batch_state"));
    line("batch_url:", json_object_get(r, "batch_url"));
    const json_t *by = json_object_get(r, "superseded_by");
    if (json_is_object(by)) {
        printf("%-14s %lld:%lld\n", "superseded by:",
               (long long)json_integer_value(json_object_get(by, "partition")),
               (long long)json_integer_value(json_object_get(by, "offset")));
        line("its receipt:", json_object_get(by, "receipt_url"));
    }
}

static void print_receipt(const json_t *r)
{
    const char *state = json_string_value(json_object_get(r, "state"));
    line("state:", json_object_get(r, "state"));
    line("token:", json_object_get(r, "token"));
    line("topic:", json_object_get(r, "topic"));
    line("partition:", json_object_get(r, "partition"));
    line("offset:", json_object_get(r, "offset"));
    line("group:", json_object_get(r, "group_id"));
    if (state != NULL && strcmp(state, "accepted") == 0) {
        line("lag:", json_object_get(r, "lag"));
        line("ahead:", json_object_get(r, "ahead"));
    } else if (state != NULL && strcmp(state, "applied") == 0) {
        line("applied by:", json_object_get(r, "applied_by"));
        if (json_object_get(r, "batch_state") != NULL) /* a version-2 token: the batch is known */
            print_batch(r);
    } else if (state != NULL && strcmp(state, "dead_lettered") == 0) {
        const json_t *d = json_object_get(r, "dead_letter");
        line("batch_id:", json_object_get(r, "batch_id"));
        line("reason:", json_object_get(d, "reason"));
        line("sqlstate:", json_object_get(d, "sqlstate"));
        line("letter topic:", json_object_get(d, "topic"));
        printf("%-14s %lld:%lld\n", "letter:", (long long)json_integer_value(json_object_get(d, "partition")),
               (long long)json_integer_value(json_object_get(d, "offset")));
        line("dead at:", json_object_get(d, "at"));
        line("replay:", json_object_get(d, "replay"));
        line("request_id:", json_object_get(r, "request_id"));
        line("traceparent:", json_object_get(r, "traceparent"));
    } else {
        line("detail:", json_object_get(r, "detail"));
    }
}

int cli_receipt(const bp_config_t *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("%s", receipt_usage);
        return 0;
    }
    int as_json = 0;
    const char *token = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "batchpipe receipt: unknown option %s (see batchpipe receipt --help)\n", argv[i]);
            return 2;
        } else if (token != NULL) {
            fprintf(stderr, "batchpipe receipt: takes one TOKEN (see batchpipe receipt --help)\n");
            return 2;
        } else {
            token = argv[i];
        }
    }
    bp_token_t tok;
    const char *why = NULL;
    if (token == NULL) {
        fprintf(stderr, "batchpipe receipt: which receipt? (batchpipe receipt TOKEN)\n");
        return 2;
    }
    if (bp_token_parse(token, strlen(token), cfg->topic, &tok, NULL, &why) != 0) {
        fprintf(stderr, "batchpipe receipt: %s (of BP_TOPIC %s)\n", why, cfg->topic);
        return 2;
    }
    char path[BP_TOKEN_MAX + 32], err[256];
    snprintf(path, sizeof(path), "/api/v1/receipts/%s/", token); /* a valid token is URL-safe */
    char *url = cli_http_url(cfg, path, err, sizeof(err));
    if (url == NULL) {
        fprintf(stderr, "batchpipe receipt: %s\n", err);
        return 2;
    }
    if (cli_http_init() != 0) {
        fprintf(stderr, "batchpipe receipt: libcurl could not be initialized\n");
        free(url);
        return 1;
    }
    cli_http_response_t resp = {0};
    int rc = 1;
    json_t *doc = NULL;
    if (cli_http_get(cfg, url, &resp) != 0 || resp.status != 200 ||
        (doc = cli_http_json(resp.body, resp.len)) == NULL) {
        char *text = cli_http_problem_text(&resp, url);
        if (resp.status == 0)
            fprintf(stderr, "batchpipe receipt: %s\n", text ? text : "out of memory");
        else
            fprintf(stderr, "batchpipe receipt: the API answered %ld: %s\n", resp.status, text ? text : "out of memory");
        free(text);
    } else {
        const char *state = json_string_value(json_object_get(doc, "state"));
        if (as_json)
            printf("%.*s\n", (int)resp.len, resp.body);
        else
            print_receipt(doc);
        rc = state != NULL && strcmp(state, "dead_lettered") == 0 ? 1 : 0;
    }
    json_decref(doc);
    cli_http_response_reset(&resp);
    cli_http_cleanup();
    free(url);
    return rc;
}
