/* cmd_dlq.c - batchpipe dlq: list, show and replay dead letters. */
#include <stdio.h>

#include "cli.h"

int cli_dlq(const bp_config_t *cfg, int argc, char **argv)
{
    (void)cfg;
    (void)argc;
    (void)argv;
    fprintf(stderr, "batchpipe dlq: not implemented yet\n");
    return 2;
}
