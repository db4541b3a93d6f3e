/* weights.h: loading a model's tensors from safetensors into backend memory
 * by a table, for every model (LLaMA, CLIP, SAM, projector, SEG head).
 *
 * Each entry names a checkpoint tensor, its expected shape and the model
 * field it fills. MATMUL entries (large weights consumed by matmul) keep
 * their file dtype on host backends and are used in place from the mmap;
 * block-quantized (Q8_0/Q4_0) ones keep it on every backend; everything
 * else (PARAM: norms, biases, embeddings that are added to activations) is
 * converted to the compute dtype. Block-type MATMUL entries with rows a
 * multiple of 16 are copied into their packed layout (Q8_0X16/Q4_0X16,
 * dtype.h) on backends that ask for it (packs_quant: the CPU's), and the
 * source pages are released. Load-time quantization (`quant`) puts
 * MATMUL_QUANT entries into a block type in the owned buffer. Non-host backends get one
 * buffer carved by a size table, uploaded once through the backend's
 * staging. A missing or mis-shaped tensor is an error naming it.
 *
 * Deliberately not here: model semantics (which tensors, tied heads). */
#ifndef LISA_WEIGHTS_H
#define LISA_WEIGHTS_H

#include "backend.h"
#include "safetensors.h"

typedef enum {
    LISA_WEIGHT_MATMUL = 0,
    LISA_WEIGHT_PARAM,
    /* A MATMUL weight that load-time quantization may turn into Q8_0/Q4_0
     * (the LLM's projections and LM head; K % 32 == 0). A file tensor
     * already in a block type is always kept in it, on every backend. */
    LISA_WEIGHT_MATMUL_QUANT
} lisa_weight_kind;

typedef struct lisa_weight_spec {
    char name[192];                 /* without the loader's prefix */
    int ndim;
    int64_t shape[LISA_MAX_DIMS];
    lisa_tensor *dst;
    lisa_weight_kind kind;
} lisa_weight_spec;

typedef struct lisa_weights {
    lisa_backend *be;
    void *buffer;                   /* owned backend buffer, or NULL */
} lisa_weights;

/* Fills every spec's dst from `st`, looking up prefix + name. */
lisa_status lisa_weights_load(lisa_weights *w, lisa_backend *be, const lisa_safetensors *st,
                              const char *prefix, lisa_weight_spec *specs, int n,
                              lisa_dtype dtype);
/* lisa_weights_load, and with `quant` Q8_0 or Q4_0 the MATMUL_QUANT entries
 * in a float dtype are quantized at load (lisa_quantize_*: the bytes the
 * converter's --quantize writes) into the owned buffer, except those whose
 * rows are not a multiple of 32 elements (they keep their dtype, as
 * llama-quantize falls back for them); F32 (or any non-block type)
 * quantizes nothing. A MATMUL_QUANT tensor already in the
 * other block type is refused: re-quantizing would compound the error. */
lisa_status lisa_weights_load_quant(lisa_weights *w, lisa_backend *be,
                                    const lisa_safetensors *st, const char *prefix,
                                    lisa_weight_spec *specs, int n, lisa_dtype dtype,
                                    lisa_dtype quant);
void lisa_weights_free(lisa_weights *w);
/* For tensors made in place in a block type (random weights): repacks t
 * (host memory) into its packed layout when the loader would have (see
 * above), else leaves it. */
lisa_status lisa_weights_pack_in_place(lisa_backend *be, lisa_tensor *t);

/* Appends one entry to a table of capacity cap (asserts on overflow);
 * name is printf-style. Returns the new count. */
int lisa_weight_spec_add(lisa_weight_spec *specs, int n, int cap, lisa_tensor *dst,
                         lisa_weight_kind kind, int ndim, const int64_t *shape, const char *fmt,
                         ...) __attribute__((format(printf, 8, 9)));

#endif
