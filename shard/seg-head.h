/* seg-head.h: LISA's [SEG] head (text_hidden_fcs): the LLM's final-norm
 * hidden state at a [SEG] -> Linear(C, C) -> ReLU -> Linear(C, E), the
 * sparse prompt embedding SAM's mask decoder takes (E = SAM's prompt dim).
 *
 * Weights: model.text_hidden_fcs.0.0.{weight (C, C), bias (C)} and
 * model.text_hidden_fcs.0.2.{weight (E, C), bias (E)}, E read from the file.
 * Scratch for max_rows rows is reserved at load; a forward of more rows runs
 * in chunks of max_rows. Deliberately not here: picking the [SEG] rows out of
 * the LLM's output (the engine does), SAM. */
#ifndef LISA_SEG_HEAD_H
#define LISA_SEG_HEAD_H

#include "backend.h"
#include "safetensors.h"
#include "weights.h"

#define LISA_SEG_HEAD_PREFIX "model.text_hidden_fcs.0."

typedef struct lisa_seg_head {
    lisa_backend *be;
    lisa_safetensors *st;     /* open while host backends use weights in place */
    lisa_weights weights;
    lisa_dtype dtype;         /* compute dtype */
    int hidden;               /* C: the LLM's hidden size */
    int dim;                  /* E: output width */
    int max_rows;             /* rows per chunk */
    lisa_tensor fc1_w, fc1_b; /* (C, C), (C) */
    lisa_tensor fc2_w, fc2_b; /* (E, C), (E) */
    lisa_tensor in, mid;      /* (max_rows, C) compute dtype */
    lisa_tensor out;          /* (max_rows, E) compute dtype */
    lisa_tensor io;           /* (max_rows, max(C, E)) fp32 staging for 16-bit dtypes */
} lisa_seg_head;

/* Loads the head from a model directory's safetensors (dir, as
 * lisa_safetensors_open takes it) for an LLM of hidden size hidden_size, in
 * compute dtype `dtype` on `be` (borrowed; must outlive the head), and
 * reserves scratch for max_rows (>= 1) rows. Errors name the missing or
 * mis-shaped tensor. On failure *h is left empty (lisa_seg_head_free is
 * safe on it). */
lisa_status lisa_seg_head_load(lisa_seg_head *h, const char *dir, lisa_backend *be,
                               lisa_dtype dtype, int hidden_size, int max_rows);
void lisa_seg_head_free(lisa_seg_head *h);

/* out = fc2(relu(fc1(hidden))) for n >= 0 rows: hidden (n, C) and out
 * (n, E) are host fp32. Synchronous. */
lisa_status lisa_seg_head_forward(lisa_seg_head *h, const float *hidden, int n, float *out);

#endif
