/* cli-util.h: small helpers shared by the CLI commands: option parsing
 * checks, backend selection and JSON string output. */
#ifndef LISA_CLI_UTIL_H
#define LISA_CLI_UTIL_H

#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "engine.h"

/* One command-line option of a table: a flag (int set to 1), a string, or
 * a non-negative count (long). */
typedef enum { CLI_FLAG, CLI_STRING, CLI_COUNT } cli_opt_kind;

typedef struct {
    const char *name;  /* "--model" */
    cli_opt_kind kind;
    void *dst;         /* int *, const char **, long * */
} cli_opt;

/* Parses argv[1..argc) against the table (values as the next argument or
 * --name=value). -h/--help prints help(stdout) and returns 1; an unknown
 * option, a missing value or a bad count prints a usage error naming it and
 * returns -1; otherwise 0. Bounds beyond "non-negative" are the caller's. */
int cli_opts_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts,
                   void (*help)(FILE *));

/* Parses a non-negative integer option value; prints a usage error naming
 * the option and returns -1 when it is not one. */
long cli_parse_count(const char *opt, const char *val);
/* Returns argv[++*i] for an option that needs a value, or NULL after
 * printing "lisa CMD: OPT needs a value". */
const char *cli_option_value(const char *cmd, int argc, char **argv, int *i);
/* Parses "cpu" / "cuda" / "cuda:N" into a kind and device index. */
int cli_parse_device(const char *val, lisa_backend_kind *kind, int *device);
/* --device and --dtype resolved: the backend kind and index, and the compute
 * dtype (dtype_s NULL: fp32 on the CPU, bf16 on CUDA, as LISA runs). 0 ok,
 * -1 after printing a usage error. */
int cli_resolve_backend(const char *device, const char *dtype_s, lisa_backend_kind *kind,
                        int *index, lisa_dtype *dtype);
/* Backend params for a command's kind, device and --threads, with the
 * environment's switches applied (LISA_CUDA_SYNC=1, LISA_GEMV=0,
 * LISA_GRAPHS=0: lisa_backend_params_from_env), so `LISA_GRAPHS=0 lisa
 * generate ...` keeps working; flags may then set more. */
lisa_backend_params cli_backend_params(lisa_backend_kind kind, int device, long threads);
/* Engine params for a command's --model, --device, --dtype and --threads
 * (the rest zero: the engine's defaults). 0 ok, -1 after printing a usage
 * error. */
int cli_engine_params(lisa_engine_params *p, const char *model, const char *device,
                      const char *dtype_s, long threads);
/* Parses fp32|f32, bf16, fp16|f16 into a dtype; prints an error otherwise. */
int cli_parse_dtype(const char *val, lisa_dtype *dtype);
/* --quantize T: "q8_0" or "q4_0" into *q (Q8_0, Q4_0); "none" gives F32 (no
 * quantization). -1 with a message on stderr otherwise. */
int cli_parse_quant(const char *val, lisa_dtype *q);
/* Writes s as a JSON string literal (quoted, escaped). */
void cli_json_string(FILE *f, const char *s);
/* Writes ids as a JSON array. */
void cli_json_ids(FILE *f, const int32_t *ids, size_t n);

#endif
