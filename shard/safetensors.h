/* safetensors.h: read-only access to HF safetensors checkpoints.
 *
 * Files are mmap'd; tensor data is never copied here. A checkpoint is either
 * one `model.safetensors` or several shards listed by
 * `model.safetensors.index.json` (its "weight_map"). Every header field and
 * offset is validated against the file size before a pointer is handed out,
 * so a truncated or hostile file yields LISA_ERR_FORMAT with a message naming
 * the file and the offending tensor, never an out-of-bounds read.
 *
 * Supported dtypes: F32, F16, BF16, and Q8_0 / Q4_0 weights stored as U8
 * [rows, K/32, block bytes] with "__metadata__": {"lisa.quant.<name>":
 * "q8_0" | "q4_0"} (docs/model-format.md), handed out as shape [rows, K];
 * others are rejected by name.
 * Deliberately not here: dtype conversion, device upload, model semantics. */
#ifndef LISA_SAFETENSORS_H
#define LISA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

typedef struct lisa_st_tensor {
    const char *name;
    lisa_dtype dtype;
    int ndim;
    int64_t shape[LISA_MAX_DIMS];
    const void *data;   /* into the mmap'd file */
    size_t nbytes;
    int file_index;     /* which shard */
} lisa_st_tensor;

typedef struct lisa_safetensors lisa_safetensors;

/* Opens `path`: a .safetensors file, a model.safetensors.index.json, or a
 * directory holding either (the index is preferred when both exist). */
lisa_status lisa_safetensors_open(lisa_safetensors **out, const char *path);
/* lisa_safetensors_open of one .safetensors file already in memory:
 * data[0..len) is not copied and must outlive *out; name stands for the
 * file in messages. The same checks as a mapped file (tests, fuzzing). */
lisa_status lisa_safetensors_open_memory(lisa_safetensors **out, const char *name,
                                         const void *data, size_t len);
/* lisa_safetensors_open of an index json given as text (len bytes) as if
 * read from index_path: its shards are opened from index_path's directory. */
lisa_status lisa_safetensors_open_index_text(lisa_safetensors **out, const char *index_path,
                                             const char *text, size_t len);
void lisa_safetensors_close(lisa_safetensors *st);
/* After t's data has been copied elsewhere: its whole pages of the mapping
 * leave the process's resident set (MADV_DONTNEED; touched again, they are
 * read back from the file). Nothing for memory the caller lent
 * (lisa_safetensors_open_memory). */
void lisa_safetensors_release(const lisa_safetensors *st, const lisa_st_tensor *t);

size_t lisa_safetensors_count(const lisa_safetensors *st);
const lisa_st_tensor *lisa_safetensors_at(const lisa_safetensors *st, size_t i);
/* NULL when absent. */
const lisa_st_tensor *lisa_safetensors_find(const lisa_safetensors *st, const char *name);

/* Looks up `name` and checks its shape equals shape[0..ndim). Errors:
 * LISA_ERR_MISSING "tensor 'X' not found in <path>", LISA_ERR_SHAPE
 * "tensor 'X': expected shape [a, b], found [c, d]". */
lisa_status lisa_safetensors_get(const lisa_safetensors *st, const char *name, int ndim,
                                 const int64_t *shape, const lisa_st_tensor **out);

/* A lisa_tensor header over the mmap'd data (CPU memory, read-only). */
lisa_tensor lisa_st_tensor_view(const lisa_st_tensor *t);

#endif
