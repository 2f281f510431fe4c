/* table.h - the CLI's text output: aligned tables for the terminal, and text from the outside world
 * (message keys, headers, values) made safe to print (control bytes and invalid UTF-8 escaped). */
#ifndef BP_CLI_TABLE_H
#define BP_CLI_TABLE_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

typedef struct cli_table cli_table_t;

/* A table with ncols columns titled by headers (borrowed, copied). Returns NULL when out of memory.
 * Free with cli_table_free. */
cli_table_t *cli_table_new(size_t ncols, const char *const *headers);

/* Right-align column col (numbers). */
void cli_table_align_right(cli_table_t *t, size_t col);

/* Append a row of ncols cells (borrowed, copied; NULL prints as "-"). Returns 0, or -1 out of memory. */
int cli_table_add(cli_table_t *t, const char *const *cells);

size_t cli_table_rows(const cli_table_t *t);

/* Print the header and the rows, columns separated by two spaces. When width > 0 the last column is
 * cut to fit a line of width characters (ending in "..."); 0 prints it whole. */
void cli_table_print(const cli_table_t *t, FILE *out, int width);

/* Accepts NULL. */
void cli_table_free(cli_table_t *t);

/* The width of the terminal on out, or 0 when out is not a terminal (then nothing is cut). */
int cli_term_width(FILE *out);

/* Columns a UTF-8 string takes on a terminal: one per code point (good enough for ids and keys; wide
 * CJK characters take two). */
size_t cli_text_width(const char *s);

/* A printable copy of len bytes: valid UTF-8 is kept, control characters and invalid bytes become
 * \xNN (newlines and tabs too unless keep_newlines). NULL when out of memory. Free with free(). */
char *cli_escape(const void *buf, size_t len, int keep_newlines);

/* Set member name of obj to buf as a JSON string when it is valid UTF-8, otherwise set name_base64
 * to its base64 (name becomes null); buf NULL sets name to null. Returns 0, or -1 out of memory. */
int cli_json_set_bytes(json_t *obj, const char *name, const void *buf, size_t len);

/* Print len bytes of JSON text (already known to be valid) indented by two spaces per level, keeping
 * every token exactly as written (numbers are not re-formatted as a parse and dump would). */
void cli_print_json_pretty(FILE *out, const char *text, size_t len);

#endif
