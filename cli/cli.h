/* cli.h - the subcommands of the batchpipe command-line tool. Each one lives in its own file and has
 * the same shape: it gets the effective configuration (settings given before the command name, and
 * the environment) and its own arguments, argv[0] being the command's name. It prints its --help, its
 * result on stdout, errors in one line on stderr ("batchpipe CMD: what went wrong"), and returns the
 * process's exit status: 0 success, 1 failure (or something rejected), 2 usage error. */
#ifndef BP_CLI_H
#define BP_CLI_H

#include "bp_config.h"
#include "bp_error.h"

typedef int (*cli_run_fn)(const bp_config_t *cfg, int argc, char **argv);

typedef struct cli_command {
    const char *name;
    const char *summary; /* one line for the tool's --help */
    cli_run_fn run;
} cli_command_t;

/* cmd_admin.c */
int cli_migrate(const bp_config_t *cfg, int argc, char **argv);
int cli_topics(const bp_config_t *cfg, int argc, char **argv);
int cli_config(const bp_config_t *cfg, int argc, char **argv);
int cli_hash_key(const bp_config_t *cfg, int argc, char **argv);
int cli_settings(const bp_config_t *cfg, int argc, char **argv);
/* cmd_counts.c */
int cli_counts(const bp_config_t *cfg, int argc, char **argv);
/* cmd_post.c */
int cli_post(const bp_config_t *cfg, int argc, char **argv);
/* cmd_receipt.c */
int cli_receipt(const bp_config_t *cfg, int argc, char **argv);
/* cmd_read.c */
int cli_get(const bp_config_t *cfg, int argc, char **argv);
int cli_query(const bp_config_t *cfg, int argc, char **argv);
/* cmd_lag.c */
int cli_lag(const bp_config_t *cfg, int argc, char **argv);
/* cmd_dlq.c */
int cli_dlq(const bp_config_t *cfg, int argc, char **argv);

/* args.c */

/* 1 when argv (after argv[0]) holds -h or --help before any "--": the command then prints its usage
 * to stdout and returns 0. */
int cli_wants_help(int argc, char **argv);

/* Option name at argv[*i], as "--name=value" or "--name value" (then *i moves past the value): returns
 * 1 and *value (borrowed), 0 when argv[*i] is not that option, -1 when it is but has no value. */
int cli_option(int argc, char **argv, int *i, const char *name, const char **value);

/* A decimal whole number in [min, max], no sign or blanks. Returns 0, or -1. */
int cli_parse_ll(const char *s, long long min, long long max, long long *out) BP_MUST_CHECK;

#endif
