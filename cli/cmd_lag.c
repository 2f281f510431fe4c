/* cmd_lag.c - batchpipe lag: the ingest group's offsets against the high watermarks. */
#include <stdio.h>

#include "cli.h"

int cli_lag(const bp_config_t *cfg, int argc, char **argv)
{
    (void)cfg;
    (void)argc;
    (void)argv;
    fprintf(stderr, "batchpipe lag: not implemented yet\n");
    return 2;
}
