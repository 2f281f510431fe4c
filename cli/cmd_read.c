/* cmd_read.c - batchpipe get and query: objects from the API. */
#include <stdio.h>

#include "cli.h"

int cli_get(const bp_config_t *cfg, int argc, char **argv)
{
    (void)cfg;
    (void)argc;
    (void)argv;
    fprintf(stderr, "batchpipe get: not implemented yet\n");
    return 2;
}

int cli_query(const bp_config_t *cfg, int argc, char **argv)
{
    (void)cfg;
    (void)argc;
    (void)argv;
    fprintf(stderr, "batchpipe query: not implemented yet\n");
    return 2;
}
