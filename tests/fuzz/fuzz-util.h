/* fuzz-util.h: what the fuzz harnesses (tests/fuzz/fuzz-*.c) share: the
 * libFuzzer entry point's prototype, an invariant check that aborts (so
 * libFuzzer and the gcc replay driver both report the input), a reader that
 * touches every byte of a buffer (so ASan sees an out-of-bounds length), and
 * small well-formed inputs the harnesses build on (a SentencePiece model,
 * safetensors files).
 *
 * Deliberately not here: any parser logic; seeds (make-corpus.c writes
 * them). */
#ifndef LISA_FUZZ_UTIL_H
#define LISA_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "status.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of a parser's contract: when it fails the harness aborts
 * with the condition and why, and the fuzzer keeps the input. */
#define FUZZ_CHECK(cond, why)                                                              \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s (%s; last error: %s)\n",   \
                    __FILE__, __LINE__, #cond, why, lisa_error_get());                     \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Empties the last-error message, so a failure without one is seen. */
#define fuzz_error_clear() ((void)lisa_error_set(LISA_OK, "%s", ""))

/* A failed call must leave a message naming the problem. */
#define FUZZ_CHECK_ERROR(st)                                                               \
    FUZZ_CHECK((st) == LISA_OK || lisa_error_get()[0] != 0, "a failure without a message")

/* Reads every byte of p[0..n) and returns their sum (so nothing is
 * optimised away). */
uint64_t fuzz_touch(const void *p, size_t n);

/* A copy of data[0..size) with a NUL after it (malloc'd; aborts when out of
 * memory), for parsers that take C strings. */
char *fuzz_strndup(const uint8_t *data, size_t size);

/* A small BPE SentencePiece model (unk, bos, eos, the 256 byte pieces, a
 * few merges of "hello world"), packed as tokenizer.model is. *buf is
 * malloc'd. */
void fuzz_spm_build(uint8_t **buf, size_t *len);

/* Writes a .safetensors file at path holding n F32 tensors named names[i],
 * tensor i of shape [i + 1] filled with i. Aborts on an I/O error. */
void fuzz_safetensors_write(const char *path, const char *const *names, int n);

/* The checks every loaded tokenizer must pass: every id in 0..n_vocab
 * has a piece whose piece_id names a piece of the same text and decodes
 * (both decoders); bos/eos are -1 or in range; an id out of range is
 * LISA_ERR_ARG; fixed texts (ASCII, UTF-8, invalid UTF-8, whitespace runs,
 * byte and control pieces) encode to ids in range, BOS first when asked
 * (LISA_ERR_ARG when the model has none). */
void fuzz_tokenizer_check(const lisa_tokenizer *t);

/* A fresh directory under $TMPDIR (or /tmp), removed at exit with the
 * files listed by fuzz_tmp_track. Aborts on failure. */
const char *fuzz_tmp_dir(void);
void fuzz_tmp_track(const char *path);

#endif
