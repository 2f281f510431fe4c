/* main.c - the batchpipe command-line tool: reads the settings, then runs one subcommand. */
#include <stdio.h>
#include <string.h>

#include "bp_log.h"
#include "cli.h"

static const cli_command_t commands[] = {
    {"post", "post batch files (or folders of them) to the API, concurrently", cli_post},
    {"receipt", "show what became of a posted batch (its token: accepted, applied, dead-lettered)", cli_receipt},
    {"get", "show one object by its object_id", cli_get},
    {"query", "list objects whose data has every key=value pair given", cli_query},
    {"lag", "per-partition committed offset, high watermark and lag of the ingest group", cli_lag},
    {"dlq", "list, show and replay the messages of the dead-letter topic", cli_dlq},
    {"counts", "verify the maintained counts against count(*), or rebuild them online", cli_counts},
    {"migrate", "create the database if missing and apply the SQL migrations not yet applied", cli_migrate},
    {"topics", "create the batch topic and its dead-letter topic if missing", cli_topics},
    {"config", "print the effective configuration as JSON, secrets masked", cli_config},
    {"hash-key", "read an API key on standard input and print its line for BP_API_KEYS_FILE", cli_hash_key},
    {"settings", "print the table of every setting as Markdown (docs/CONFIGURATION.md)", cli_settings},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static char usage[4096];

static void build_usage(void)
{
    size_t off = (size_t)snprintf(usage, sizeof(usage),
                                  "usage: batchpipe [settings] COMMAND [ARGS]  (batchpipe COMMAND --help)\n"
                                  "\nCommands:\n");
    for (size_t i = 0; i < N_COMMANDS && off < sizeof(usage); i++)
        off += (size_t)snprintf(usage + off, sizeof(usage) - off, "  %-9s %s\n", commands[i].name,
                                commands[i].summary);
    if (off < sizeof(usage))
        snprintf(usage + off, sizeof(usage) - off, "\nEvery setting is also read from its environment variable.\n");
}

int main(int argc, char **argv)
{
    bp_config_t cfg;
    char err[1024];
    int first = argc;
    build_usage();
    int rc = bp_config_load(&cfg, BP_FOR_ALL, usage, argc, argv, &first, err, sizeof(err));
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "batchpipe: %s\n", err);
        bp_config_free(&cfg);
        return rc < 0 ? 2 : 0;
    }
    bp_log_level_t level = BP_LOG_WARN;
    (void)bp_log_level_parse(cfg.log_level, &level);
    bp_log_init("cli", level > BP_LOG_WARN ? level : BP_LOG_WARN);
    if (first >= argc) {
        fprintf(stderr, "%s", usage);
        bp_config_free(&cfg);
        return 2;
    }
    const char *name = argv[first];
    const cli_command_t *cmd = NULL;
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            cmd = &commands[i];
    if (cmd == NULL) {
        fprintf(stderr, "batchpipe: unknown command \"%s\" (see batchpipe --help)\n", name);
        rc = 2;
    } else {
        rc = cmd->run(&cfg, argc - first, argv + first);
    }
    bp_config_free(&cfg);
    return rc;
}
