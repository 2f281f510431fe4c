/* cmd_post.c - batchpipe post: batch files to the API, concurrently. */
#include <stdio.h>

#include "cli.h"

int cli_post(const bp_config_t *cfg, int argc, char **argv)
{
    (void)cfg;
    (void)argc;
    (void)argv;
    fprintf(stderr, "batchpipe post: not implemented yet\n");
    return 2;
}
