/* cli-util.h: small helpers shared by the CLI commands: option parsing
 * checks, backend selection and JSON string output. */
#ifndef LISA_CLI_UTIL_H
#define LISA_CLI_UTIL_H

#include <stdint.h>
#include <stdio.h>

#include "backend.h"

/* Parses a non-negative integer option value; prints a usage error naming
 * the option and returns -1 when it is not one. */
long cli_parse_count(const char *opt, const char *val);
/* Returns argv[++*i] for an option that needs a value, or NULL after
 * printing "lisa CMD: OPT needs a value". */
const char *cli_option_value(const char *cmd, int argc, char **argv, int *i);
/* Parses "cpu" / "cuda" / "cuda:N" into a kind and device index. */
int cli_parse_device(const char *val, lisa_backend_kind *kind, int *device);
/* Parses fp32|f32, bf16, fp16|f16 into a dtype; prints an error otherwise. */
int cli_parse_dtype(const char *val, lisa_dtype *dtype);
/* Writes s as a JSON string literal (quoted, escaped). */
void cli_json_string(FILE *f, const char *s);
/* Writes ids as a JSON array. */
void cli_json_ids(FILE *f, const int32_t *ids, size_t n);

#endif
