/* fuzz-safetensors.c: libFuzzer harness for a .safetensors file (its 8-byte
 * length, JSON header and data section; shard/safetensors.h), opened from
 * memory with lisa_safetensors_open_memory, the same checks a mapped file
 * gets.
 *
 * Invariants checked: an open either fails with a message or gives a table
 * whose every tensor lies inside the input's data section (all its bytes
 * are read), holds exactly prod(shape) * dtype-size bytes, has 0..LISA_MAX_DIMS dims,
 * a supported dtype (Q8_0 / Q4_0 only as 2-D [rows, K]) and a name; names are sorted and unique; find() and
 * get() with the tensor's own shape return that tensor, get() with another
 * shape fails with LISA_ERR_SHAPE; at() past the end is NULL.
 *
 * Deliberately not here: sharded checkpoints (fuzz-st-index.c). */
#include <string.h>

#include "fuzz-util.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lisa_safetensors *st = NULL;
    fuzz_error_clear();
    lisa_status s = lisa_safetensors_open_memory(&st, "fuzz.safetensors", data, size);
    FUZZ_CHECK_ERROR(s);
    if (s != LISA_OK) {
        FUZZ_CHECK(st == NULL, "a failed open returned a checkpoint");
        return 0;
    }
    FUZZ_CHECK(size >= 8, "opened a file shorter than its length field");
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | data[i];
    const uint8_t *begin = data + 8 + hlen, *end = data + size;
    size_t n = lisa_safetensors_count(st);
    for (size_t i = 0; i < n; i++) {
        const lisa_st_tensor *t = lisa_safetensors_at(st, i);
        FUZZ_CHECK(t != NULL && t->name != NULL, "a tensor without a name");
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= LISA_MAX_DIMS, "ndim out of range");
        FUZZ_CHECK(t->dtype == LISA_DTYPE_F32 || t->dtype == LISA_DTYPE_F16 ||
                       t->dtype == LISA_DTYPE_BF16 ||
                       (lisa_dtype_is_quant(t->dtype) && t->ndim == 2),
                   "unsupported dtype accepted");
        uint64_t nelem = 1;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_CHECK(t->shape[d] >= 0, "negative dimension");
            nelem *= (uint64_t)t->shape[d];
        }
        FUZZ_CHECK(lisa_dtype_row_bytes(t->dtype, (int64_t)nelem) == t->nbytes &&
                       (!lisa_dtype_is_quant(t->dtype) || t->shape[t->ndim - 1] % LISA_QK == 0),
                   "byte count is not the shape's");
        const uint8_t *p = t->data;
        FUZZ_CHECK(p >= begin && p <= end && t->nbytes <= (size_t)(end - p),
                   "tensor data outside the data section");
        fuzz_touch(p, t->nbytes);
        FUZZ_CHECK(t->file_index == 0, "a single file has one file index");
        if (i > 0)
            FUZZ_CHECK(strcmp(lisa_safetensors_at(st, i - 1)->name, t->name) < 0,
                       "names not sorted and unique");
        FUZZ_CHECK(lisa_safetensors_find(st, t->name) == t, "find() misses a tensor");
        const lisa_st_tensor *got = NULL;
        FUZZ_CHECK(lisa_safetensors_get(st, t->name, t->ndim, t->shape, &got) == LISA_OK &&
                       got == t,
                   "get() with the tensor's own shape failed");
        int64_t other[LISA_MAX_DIMS + 1];
        memcpy(other, t->shape, sizeof t->shape);
        other[t->ndim] = 7;
        FUZZ_CHECK(lisa_safetensors_get(st, t->name, t->ndim + 1, other, &got) == LISA_ERR_SHAPE &&
                       got == NULL,
                   "get() with another shape did not fail");
        lisa_tensor v = lisa_st_tensor_view(t);
        FUZZ_CHECK(v.data == t->data && v.ndim == t->ndim && v.dtype == t->dtype, "view differs");
    }
    FUZZ_CHECK(lisa_safetensors_at(st, n) == NULL, "at() past the end");
    FUZZ_CHECK(lisa_safetensors_find(st, "\x01no such tensor") == NULL, "find() invented one");
    lisa_safetensors_close(st);
    return 0;
}
