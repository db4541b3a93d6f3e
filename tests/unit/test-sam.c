/* test-sam.c: SAM (shard/sam.h) against segment-anything fp32 on the small
 * random-weight model of tests/fixtures/sam/ (gen_sam.py), on the CPU.
 *
 * Checks: the configuration read from the tensor shapes; the image
 * embedding (from the engine's own decode + SAM preprocessing of the
 * fixture image), the dense PE, low-res logits and IoU of 3 [SEG]-style
 * prompts (end to end, and from the reference embedding), the multimask
 * path (IoU and sampled logits), decoding in batches equal to one prompt at
 * a time, an encoder batch of two images (the fixture image and its mirror)
 * equal to each image encoded alone and decoding either image's embedding
 * of that batch equal to decoding its batch-of-one embedding, postprocessed
 * logits at the original size and the binary masks
 * (identical except where the reference logit is within 1e-4 of 0), and
 * clear errors for bad checkpoints (missing tensor, wrong shape, head count
 * contradicting the shapes) and bad arguments.
 *
 * Relative error = max |diff| / max |ref| (testutil.h). Measured on the
 * development machine (OpenBLAS, 2 threads); the tolerances are ~5-10x
 * above and at most 1e-4:
 *   image embedding 2.2e-6, dense PE 6.0e-8, low-res logits 2.3e-6 (from
 *   the reference embedding 1.5e-6), IoU 1.3e-5 (the IoUs are small,
 *   |iou| <= 0.025, so this is 3e-7 absolute), multimask IoU 6.4e-7 and
 *   sampled logits 1.0e-6, original-size logits 2.1e-6 (the resize path
 *   alone on the reference low-res logits 1.4e-7), batched vs one prompt
 *   at a time 8.3e-7 (logits) and 1.2e-6 (IoU); an encoder batch of 2 vs
 *   each image alone 1.8e-7 (image 0) and 8.0e-7 (image 1) for the
 *   embeddings (not 0: OpenBLAS sgemm rounds a row differently for another
 *   row count M, ~1 ulp on a few elements, so the batch's (2T, D) matmuls
 *   differ from the (T, D) ones), decoding image 1 / image 0 of the batch
 *   vs its batch-of-one embedding 9.5e-7 / 8.8e-7 (logits), 3.0e-6 /
 *   1.3e-5 (IoU, small values as above); binary masks: 0 differing
 *   pixels (31 reference logits within 1e-4 of 0). For scale: the fp32
 *   reference itself is 1.0e-6 (logits) from an fp64 run.
 * The model checks run again on the CUDA backend in fp32 when one is
 * present (tolerance 1e-4, not yet measured on a GPU); with
 * LISA_REQUIRE_CUDA=1 a missing device fails the test.
 * Deliberately not here: real SAM-H weights (too large for fixtures), bf16
 * and fp16 compute (no reference for them yet). */
#include "sam.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preprocess.h"
#include "testutil.h"

/* Tolerances (relative) of one backend's run. */
typedef struct {
    double embed, pe, lowres, iou, up, pp, batch;
    double images;  /* embeddings of an encoder batch of 2 images vs each image alone */
} sam_tol;

static const sam_tol k_tol_cpu = {2e-5, 5e-7, 2e-5, 1e-4, 2e-5, 1e-6, 1e-5, 5e-6};
/* CUDA in fp32: a first guess, not yet measured on a GPU (cuBLASLt may pick
 * another algorithm for the batch's taller matmuls). */
static const sam_tol k_tol_cuda = {1e-4, 5e-7, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-5};
#define NEAR_ZERO 1e-4

static const char *g_fix;

static float *read_f32(const char *name, size_t n) {
    size_t len = 0;
    char *buf = test_read_file(test_path(g_fix, name), &len);
    if (!buf || len != n * sizeof(float)) {
        fprintf(stderr, "fixture %s: expected %zu bytes, got %zu\n", name, n * sizeof(float),
                buf ? len : 0);
        free(buf);
        return NULL;
    }
    return (float *)buf;
}

static const cJSON *jget(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}
static double jnum(const cJSON *o, const char *k) { return cJSON_GetNumberValue(jget(o, k)); }
static double jat(const cJSON *a, int i) { return cJSON_GetNumberValue(cJSON_GetArrayItem(a, i)); }
static int jidx(const cJSON *a, int i) { return (int)jat(a, i); }

static void check_config(const lisa_sam_config *c, const cJSON *meta) {
    const cJSON *e = jget(meta, "encoder"), *d = jget(meta, "decoder");
    CHECK(c->embed_dim == (int)jnum(e, "embed_dim"), "embed_dim %d", c->embed_dim);
    CHECK(c->depth == (int)jnum(e, "depth"), "depth %d", c->depth);
    CHECK(c->num_heads == (int)jnum(e, "num_heads"), "encoder heads %d", c->num_heads);
    CHECK(c->patch == 16 && c->grid == 64 && c->img_size == 1024, "geometry %d %d %d", c->patch,
          c->grid, c->img_size);
    CHECK(c->window == (int)jnum(e, "window_size"), "window %d", c->window);
    CHECK(c->mlp_dim == 4 * c->embed_dim, "mlp %d", c->mlp_dim);
    const cJSON *g = jget(e, "global_attn_indexes");
    int want[LISA_SAM_MAX_BLOCKS] = {0};
    for (int i = 0; i < cJSON_GetArraySize(g); i++) want[jidx(g, i)] = 1;
    for (int i = 0; i < c->depth; i++)
        CHECK(c->global[i] == want[i], "block %d global %d", i, c->global[i]);
    CHECK(c->n_global == cJSON_GetArraySize(g), "n_global %d", c->n_global);
    CHECK(c->dim == (int)jnum(e, "out_chans") && c->dim == (int)jnum(d, "transformer_dim"),
          "dim %d", c->dim);
    CHECK(c->dec_depth == (int)jnum(d, "depth"), "dec depth %d", c->dec_depth);
    CHECK(c->dec_heads == (int)jnum(d, "num_heads"), "dec heads %d", c->dec_heads);
    CHECK(c->dec_mlp_dim == (int)jnum(d, "mlp_dim"), "dec mlp %d", c->dec_mlp_dim);
    CHECK(c->dec_cross_dim == c->dim / 2, "cross dim %d", c->dec_cross_dim);
    CHECK(c->num_mask_tokens == (int)jnum(d, "num_mask_tokens"), "mask tokens %d",
          c->num_mask_tokens);
    CHECK(c->iou_hidden == (int)jnum(d, "iou_head_hidden_dim"), "iou hidden %d", c->iou_hidden);
    CHECK(c->up1 == c->dim / 4 && c->up2 == c->dim / 8, "upscaling %d %d", c->up1, c->up2);
}

/* --- bad checkpoints: the fixture rewritten without / with a changed tensor --- */

/* Writes every tensor of `st` to path except `drop`; `reshape` gets shape
 * new_shape (ndim dims) and the first bytes of its data. F32 only. */
static int write_variant(const char *path, const lisa_safetensors *st, const char *drop,
                         const char *reshape, int ndim, const int64_t *new_shape) {
    cJSON *h = cJSON_CreateObject();
    size_t n = lisa_safetensors_count(st), off = 0;
    size_t *sizes = calloc(n, sizeof *sizes);
    for (size_t i = 0; i < n; i++) {
        const lisa_st_tensor *t = lisa_safetensors_at(st, i);
        if (drop && strcmp(t->name, drop) == 0) continue;
        int nd = t->ndim;
        const int64_t *shp = t->shape;
        if (reshape && strcmp(t->name, reshape) == 0) {
            nd = ndim;
            shp = new_shape;
        }
        size_t ne = 1;
        cJSON *e = cJSON_CreateObject(), *sh = cJSON_CreateArray(), *of = cJSON_CreateArray();
        for (int k = 0; k < nd; k++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shp[k]));
            ne *= (size_t)shp[k];
        }
        sizes[i] = ne * 4;
        if (sizes[i] > t->nbytes) sizes[i] = t->nbytes;
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + sizes[i])));
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON_AddItemToObject(e, "shape", sh);
        cJSON_AddItemToObject(e, "data_offsets", of);
        cJSON_AddItemToObject(h, t->name, e);
        off += sizes[i];
    }
    char *hdr = cJSON_PrintUnformatted(h);
    FILE *f = fopen(path, "wb");
    int ok = f && hdr;
    if (ok) {
        uint64_t hl = strlen(hdr);
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hl >> (8 * i));
        fwrite(len8, 1, 8, f);
        fwrite(hdr, 1, hl, f);
        for (size_t i = 0; i < n; i++)
            if (sizes[i]) fwrite(lisa_safetensors_at(st, i)->data, 1, sizes[i], f);
    }
    if (f) fclose(f);
    cJSON_free(hdr);
    cJSON_Delete(h);
    free(sizes);
    return ok;
}

static void expect_load_error(lisa_backend *be, const char *path, const lisa_sam_options *o,
                              lisa_status want, const char *needle, const char *what) {
    lisa_sam_model m;
    lisa_status s = lisa_sam_model_load(&m, path, be, LISA_DTYPE_F32, o);
    CHECK(s == want, "%s: status %d (%s), want %d", what, (int)s, lisa_error_get(), (int)want);
    CHECK(strstr(lisa_error_get(), needle) != NULL, "%s: message '%s' lacks '%s'", what,
          lisa_error_get(), needle);
    if (s == LISA_OK) lisa_sam_model_free(&m);
    else fprintf(stderr, "  (%s: %s)\n", what, lisa_error_get());
}

static void test_bad_checkpoints(lisa_backend *be, const char *model_path) {
    lisa_safetensors *st = NULL;
    if (lisa_safetensors_open(&st, model_path) != LISA_OK) {
        CHECK(0, "open %s: %s", model_path, lisa_error_get());
        return;
    }
    char dir[] = "/tmp/test-sam-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        lisa_safetensors_close(st);
        return;
    }
    char p1[64], p2[64], p3[64];
    snprintf(p1, sizeof p1, "%s/missing.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/shape.safetensors", dir);
    snprintf(p3, sizeof p3, "%s/shape0.safetensors", dir);
    lisa_sam_options o = {"model.visual_model.", 0, 2};
    const char *miss = "model.visual_model.mask_decoder.transformer.layers.1.mlp.lin2.weight";
    const char *bad = "model.visual_model.image_encoder.blocks.0.attn.proj.weight";
    const char *bad0 = "model.visual_model.image_encoder.pos_embed";
    CHECK(write_variant(p1, st, miss, NULL, 0, NULL), "write %s", p1);
    CHECK(write_variant(p2, st, NULL, bad, 2, (const int64_t[]){32, 31}), "write %s", p2);
    CHECK(write_variant(p3, st, NULL, bad0, 4, (const int64_t[]){1, 32, 32, 32}), "write %s", p3);
    expect_load_error(be, p1, &o, LISA_ERR_MISSING, miss, "missing tensor");
    expect_load_error(be, p2, &o, LISA_ERR_SHAPE, bad, "wrong shape");
    expect_load_error(be, p2, &o, LISA_ERR_SHAPE, "[32, 31]", "wrong shape (found)");
    expect_load_error(be, p3, &o, LISA_ERR_SHAPE, bad0, "pos_embed grid mismatch");
    lisa_sam_options no_prefix = {NULL, 0, 2};
    expect_load_error(be, model_path, &no_prefix, LISA_ERR_MISSING,
                      "image_encoder.patch_embed.proj.weight", "no prefix");
    lisa_sam_options heads = {"model.visual_model.", 3, 2};
    expect_load_error(be, model_path, &heads, LISA_ERR_SHAPE, "rel_pos_h", "encoder heads 3");
    lisa_sam_options dheads = {"model.visual_model.", 0, 3};
    expect_load_error(be, model_path, &dheads, LISA_ERR_SHAPE, "decoder heads", "decoder heads 3");
    unlink(p1);
    unlink(p2);
    unlink(p3);
    rmdir(dir);
    lisa_safetensors_close(st);
}

/* --- the image encoder on a batch of images --- */

/* Encodes `image` (3, S, S) and its left-right mirror as one batch of 2
 * (mirror first) and checks each embedding, and the decoder on each
 * selected image, against the same image through a batch-of-one state;
 * plus the argument errors of batched encoding and selection. */
static void test_encode_batch(lisa_sam_model *m, const float *image, const float *sparse, int n,
                              int64_t npix, const sam_tol *tol) {
    const int64_t S = m->cfg.img_size, SS = S * S, G = m->cfg.grid, T = G * G, C = m->cfg.dim;
    const int64_t TC = T * C, UU = 16 * T;
    lisa_sam_state one, two;
    memset(&one, 0, sizeof one);
    memset(&two, 0, sizeof two);
    float *imgs = malloc((size_t)(2 * 3 * SS) * sizeof(float));
    float *emb1 = malloc((size_t)(2 * TC) * sizeof(float));  /* (2, G, G, C) each alone */
    float *emb2 = malloc((size_t)(2 * TC) * sizeof(float));  /* (2, G, G, C) batched */
    float *low1 = malloc((size_t)(2 * n * UU) * sizeof(float));
    float *low2 = malloc((size_t)(2 * n * UU) * sizeof(float));
    float iou1[32], iou2[32];
    CHECK(imgs && emb1 && emb2 && low1 && low2 && n <= 16, "batch test buffers");
    if (!imgs || !emb1 || !emb2 || !low1 || !low2 || n > 16) goto done;
    /* image 0: the mirror (a different input), image 1: the image itself */
    for (int64_t ch = 0; ch < 3; ch++)
        for (int64_t y = 0; y < S; y++)
            for (int64_t xx = 0; xx < S; xx++)
                imgs[(ch * S + y) * S + xx] = image[(ch * S + y) * S + (S - 1 - xx)];
    memcpy(imgs + 3 * SS, image, (size_t)(3 * SS) * sizeof(float));

    lisa_status s = lisa_sam_state_init(&one, m, n, 1, npix);
    CHECK(s == LISA_OK && one.max_images == 1, "batch-of-one state: %s", lisa_error_get());
    if (s != LISA_OK) goto done;
    s = lisa_sam_state_init_batch(&two, m, 2, n, 1, npix);
    CHECK(s == LISA_OK && two.max_images == 2, "state of 2 images: %s", lisa_error_get());
    if (s != LISA_OK) goto done;
    lisa_sam_state bad;
    CHECK(lisa_sam_state_init_batch(&bad, m, 0, n, 1, npix) == LISA_ERR_ARG, "max_images 0");

    /* each image alone: embedding and decode */
    for (int b = 0; b < 2; b++) {
        s = lisa_sam_encode(m, &one, imgs + b * 3 * SS, emb1 + b * TC);
        CHECK(s == LISA_OK, "encode image %d alone: %s", b, lisa_error_get());
        s = lisa_sam_decode(m, &one, sparse, n, 1, 0, low1 + b * n * UU, iou1 + b * n);
        CHECK(s == LISA_OK, "decode image %d alone: %s", b, lisa_error_get());
    }
    CHECK(lisa_sam_encode_batch(m, &one, imgs, 2, NULL) == LISA_ERR_ARG,
          "2 images in a state of 1");
    CHECK(lisa_sam_decode(m, &one, sparse, n, 1, 0, low2, iou2) == LISA_ERR_ARG,
          "decode after a failed encode");

    /* both in one pass */
    s = lisa_sam_encode_batch(m, &two, imgs, 2, emb2);
    CHECK(s == LISA_OK, "encode a batch of 2: %s", lisa_error_get());
    CHECK(two.n_embeddings == 2 && two.selected == 0, "batch of 2 holds %d, selects %d",
          two.n_embeddings, two.selected);
    double e0 = test_rel_err(emb2, emb1, (size_t)TC);
    double e1 = test_rel_err(emb2 + TC, emb1 + TC, (size_t)TC);
    double ed = test_rel_err(emb1, emb1 + TC, (size_t)TC);
    fprintf(stderr, "encoder batch of 2 vs alone: image 0 %.3g, image 1 %.3g (the two images' "
            "embeddings differ by %.3g)\n", e0, e1, ed);
    CHECK(e0 <= tol->images && e1 <= tol->images, "encoder batch of 2 vs alone: %.3g %.3g", e0,
          e1);
    CHECK(ed > 1e-2, "the mirrored image's embedding differs (%.3g)", ed);

    /* decode image 1, then image 0 (the selection switches back), then 1 */
    double dl[2] = {0, 0}, di[2] = {0, 0};
    int order[3] = {1, 0, 1};
    for (int t = 0; t < 3; t++) {
        int b = order[t];
        CHECK(lisa_sam_select_embedding(&two, b) == LISA_OK && two.selected == b, "select %d", b);
        s = lisa_sam_decode(m, &two, sparse, n, 1, 0, low2 + b * n * UU, iou2 + b * n);
        CHECK(s == LISA_OK, "decode image %d of the batch: %s", b, lisa_error_get());
        dl[b] = fmax(dl[b], test_rel_err(low2 + b * n * UU, low1 + b * n * UU, (size_t)(n * UU)));
        di[b] = fmax(di[b], test_rel_err(iou2 + b * n, iou1 + b * n, (size_t)n));
    }
    fprintf(stderr, "decode on image 1 / image 0 of the batch vs alone: low-res %.3g / %.3g, "
            "IoU %.3g / %.3g\n", dl[1], dl[0], di[1], di[0]);
    for (int b = 0; b < 2; b++)
        CHECK(dl[b] <= tol->batch && di[b] <= tol->iou,
              "decode on image %d of the batch vs alone: %.3g %.3g", b, dl[b], di[b]);

    /* selection and batch-size errors */
    CHECK(lisa_sam_select_embedding(&two, 2) == LISA_ERR_ARG && two.selected == 1, "select 2");
    CHECK(lisa_sam_select_embedding(&two, -1) == LISA_ERR_ARG, "select -1");
    CHECK(lisa_sam_encode_batch(m, &two, imgs, 0, NULL) == LISA_ERR_ARG, "a batch of 0");
    CHECK(lisa_sam_encode_batch(m, &two, imgs, 3, NULL) == LISA_ERR_ARG, "a batch of 3");
    CHECK(lisa_sam_select_embedding(&two, 0) == LISA_ERR_ARG, "select after a failed encode");
    /* one image through the 2-image state, and set_embedding: one held */
    s = lisa_sam_encode_batch(m, &two, imgs + 3 * SS, 1, emb2);
    e1 = test_rel_err(emb2, emb1 + TC, (size_t)TC);
    CHECK(s == LISA_OK && two.n_embeddings == 1 && e1 <= tol->images,
          "a batch of 1 in a state of 2: %.3g", e1);
    CHECK(lisa_sam_set_embedding(m, &two, emb1) == LISA_OK && two.n_embeddings == 1 &&
              two.selected == 0 && lisa_sam_select_embedding(&two, 1) == LISA_ERR_ARG,
          "set_embedding holds one embedding");

done:
    lisa_sam_state_free(&one);
    lisa_sam_state_free(&two);
    free(imgs), free(emb1), free(emb2), free(low1), free(low2);
}

/* --- the main comparison --- */

static void test_model(lisa_backend *be, const cJSON *meta, const char *model_path,
                       const sam_tol *tol) {
    fprintf(stderr, "--- %s backend\n", be->ops->name);
    lisa_sam_options o = {"model.visual_model.", 0, (int)jnum(jget(meta, "decoder"), "num_heads")};
    lisa_sam_model m;
    lisa_status s = lisa_sam_model_load(&m, model_path, be, LISA_DTYPE_F32, &o);
    CHECK(s == LISA_OK, "load: %s", lisa_error_get());
    if (s != LISA_OK) return;
    check_config(&m.cfg, meta);
    lisa_sam_options o2 = o;
    o2.encoder_heads = m.cfg.num_heads;
    lisa_sam_model m2;
    s = lisa_sam_model_load(&m2, model_path, be, LISA_DTYPE_F32, &o2);
    CHECK(s == LISA_OK, "load with the right explicit encoder heads: %s", lisa_error_get());
    if (s == LISA_OK) lisa_sam_model_free(&m2);

    const int n = (int)jnum(meta, "n_prompts");
    const int64_t G = m.cfg.grid, T = G * G, C = m.cfg.dim, UU = 16 * T;
    const cJSON *ohw = jget(meta, "orig_hw"), *rhw = jget(meta, "resize_hw");
    int h0 = jidx(ohw, 0), w0 = jidx(ohw, 1), rh = jidx(rhw, 0), rw = jidx(rhw, 1);
    int64_t npix = (int64_t)h0 * w0;
    float *ref_emb = read_f32("sam/image_embed.bin", (size_t)(T * C));
    float *ref_pe = read_f32("sam/dense_pe.bin", (size_t)(T * C));
    float *ref_low = read_f32("sam/lowres.bin", (size_t)(n * UU));
    float *ref_up = read_f32("sam/masks_logits.bin", (size_t)(n * npix));
    float *sparse = read_f32("sam/sparse.bin", (size_t)(n * C));
    size_t mlen = 0;
    uint8_t *ref_bits = (uint8_t *)test_read_file(test_path(g_fix, "sam/masks.bin"), &mlen);
    CHECK(ref_emb && ref_pe && ref_low && ref_up && sparse && ref_bits &&
              mlen == (size_t)((n * npix + 7) / 8),
          "fixtures readable");
    float *emb = malloc((size_t)(T * C) * sizeof(float));
    float *low = malloc((size_t)(n * UU) * sizeof(float));
    float *low1 = malloc((size_t)(n * UU) * sizeof(float));
    float *up = malloc((size_t)npix * sizeof(float));
    uint8_t *mask = malloc((size_t)npix);
    float iou[16], iou1[16];
    lisa_sam_state st, st2;
    memset(&st, 0, sizeof st);
    memset(&st2, 0, sizeof st2);
    lisa_image img = {0};
    lisa_preprocessed pp;
    memset(&pp, 0, sizeof pp);
    if (!ref_emb || !ref_pe || !ref_low || !ref_up || !sparse || !ref_bits || !emb || !low ||
        !low1 || !up || !mask)
        goto done;

    /* dense PE, computed at load */
    double e = test_rel_err(m.dense_pe_host, ref_pe, (size_t)(T * C));
    fprintf(stderr, "dense PE rel err %.3g\n", e);
    CHECK(e <= tol->pe, "dense PE rel err %.3g", e);

    /* input: the engine's image decode + SAM preprocessing */
    s = lisa_image_load(&img, test_path(g_fix, cJSON_GetStringValue(jget(meta, "image"))), NULL);
    CHECK(s == LISA_OK, "image: %s", lisa_error_get());
    if (s != LISA_OK) goto done;
    s = lisa_preprocess_sam(&img, m.cfg.img_size, m.cfg.img_size, &pp);
    CHECK(s == LISA_OK, "preprocess: %s", lisa_error_get());
    if (s != LISA_OK) goto done;
    CHECK(pp.orig_h == h0 && pp.orig_w == w0 && pp.resize_h == rh && pp.resize_w == rw,
          "sizes %dx%d -> %dx%d", pp.orig_h, pp.orig_w, pp.resize_h, pp.resize_w);
    double sum = 0;
    for (int64_t i = 0; i < 3 * (int64_t)m.cfg.img_size * m.cfg.img_size; i++) sum += pp.chw[i];
    CHECK(fabs(sum - jnum(meta, "input_sum")) <= 1e-9 * fabs(sum),
          "preprocessed input sum %.17g, reference %.17g", sum, jnum(meta, "input_sum"));

    s = lisa_sam_state_init(&st, &m, n, 1, npix);
    CHECK(s == LISA_OK, "state: %s", lisa_error_get());
    if (s != LISA_OK) goto done;
    s = lisa_sam_decode(&m, &st, sparse, n, 1, 0, low, iou);
    CHECK(s == LISA_ERR_ARG, "decode before any embedding: %d", (int)s);

    /* image encoder */
    s = lisa_sam_encode(&m, &st, pp.chw, emb);
    CHECK(s == LISA_OK, "encode: %s", lisa_error_get());
    e = test_rel_err(emb, ref_emb, (size_t)(T * C));
    fprintf(stderr, "image embedding rel err %.3g\n", e);
    CHECK(e <= tol->embed, "image embedding rel err %.3g", e);

    /* decoder end to end (one batch of n prompts) */
    s = lisa_sam_decode(&m, &st, sparse, n, 1, 0, low, iou);
    CHECK(s == LISA_OK, "decode: %s", lisa_error_get());
    e = test_rel_err(low, ref_low, (size_t)(n * UU));
    fprintf(stderr, "low-res logits rel err %.3g (end to end)\n", e);
    CHECK(e <= tol->lowres, "low-res logits rel err %.3g", e);
    float ref_iou[16];
    for (int i = 0; i < n; i++) ref_iou[i] = (float)jat(jget(meta, "iou"), i);
    e = test_rel_err(iou, ref_iou, (size_t)n);
    fprintf(stderr, "IoU rel err %.3g\n", e);
    CHECK(e <= tol->iou, "IoU rel err %.3g", e);

    /* postprocess to the original size and threshold */
    double up_err = 0;
    int64_t differ = 0, near0 = 0, differ_far = 0, bits_bad = 0;
    for (int b = 0; b < n; b++) {
        s = lisa_sam_postprocess(&m, &st, low + b * UU, rh, rw, h0, w0, up, mask);
        CHECK(s == LISA_OK, "postprocess %d: %s", b, lisa_error_get());
        double eb = test_rel_err(up, ref_up + b * npix, (size_t)npix);
        if (eb > up_err) up_err = eb;
        for (int64_t i = 0; i < npix; i++) {
            int64_t bit = b * npix + i;
            int ref = (ref_bits[bit >> 3] >> (7 - (bit & 7))) & 1;
            int nz = fabsf(ref_up[bit]) < NEAR_ZERO;
            near0 += nz;
            if (mask[i] != ref) {
                differ++;
                if (!nz) differ_far++;
            }
            bits_bad += ref != (ref_up[bit] > 0.0f);
        }
    }
    fprintf(stderr, "original-size logits rel err %.3g; masks: %lld pixels differ (%lld with "
            "|ref| >= %g); %lld reference logits within %g of 0\n",
            up_err, (long long)differ, (long long)differ_far, NEAR_ZERO, (long long)near0,
            NEAR_ZERO);
    CHECK(bits_bad == 0, "%lld fixture mask bits disagree with their logits", (long long)bits_bad);
    CHECK(up_err <= tol->up, "original-size logits rel err %.3g", up_err);
    CHECK(differ_far == 0, "%lld mask pixels differ away from 0", (long long)differ_far);
    /* the resize path alone, on the reference low-res logits */
    s = lisa_sam_postprocess(&m, &st, ref_low, rh, rw, h0, w0, up, NULL);
    e = test_rel_err(up, ref_up, (size_t)npix);
    fprintf(stderr, "postprocess of the reference low-res logits rel err %.3g\n", e);
    CHECK(s == LISA_OK && e <= tol->pp, "postprocess of reference low-res rel err %.3g", e);
    CHECK(lisa_sam_postprocess(&m, &st, low, rh, rw, h0 + 1, w0, up, mask) == LISA_ERR_ARG,
          "postprocess beyond max_pixels");
    CHECK(lisa_sam_postprocess(&m, &st, low, 0, rw, h0, w0, up, mask) == LISA_ERR_ARG,
          "postprocess resized 0");
    CHECK(lisa_sam_decode(&m, &st, sparse, n, 2, 0, low1, NULL) == LISA_ERR_ARG,
          "decode with ns > max_sparse");

    /* decoder from the reference embedding: the decoder's own error */
    s = lisa_sam_set_embedding(&m, &st, ref_emb);
    CHECK(s == LISA_OK, "set embedding: %s", lisa_error_get());
    s = lisa_sam_decode(&m, &st, sparse, n, 1, 0, low1, NULL);
    CHECK(s == LISA_OK, "decode from the reference embedding: %s", lisa_error_get());
    e = test_rel_err(low1, ref_low, (size_t)(n * UU));
    fprintf(stderr, "low-res logits rel err %.3g (from the reference embedding)\n", e);
    CHECK(e <= tol->lowres, "low-res rel err from the reference embedding %.3g", e);

    /* multimask: IoU (n, 3) and sampled logits */
    {
        int nm = m.cfg.num_mask_tokens - 1;
        float *lm = malloc((size_t)(n * nm * UU) * sizeof(float));
        float im[64];
        s = lm ? lisa_sam_decode(&m, &st, sparse, n, 1, 1, lm, im) : LISA_ERR_NOMEM;
        CHECK(s == LISA_OK, "multimask decode: %s", lisa_error_get());
        if (s == LISA_OK) {
            const cJSON *ji = jget(meta, "multimask_iou"), *js = jget(meta, "multimask_samples");
            int stride = (int)jnum(meta, "multimask_sample_stride");
            double md = 0, mr = 0, sd = 0, sr = 0;
            for (int b = 0; b < n; b++)
                for (int j = 0; j < nm; j++) {
                    double r = jat(cJSON_GetArrayItem(ji, b), j);
                    md = fmax(md, fabs(im[b * nm + j] - r));
                    mr = fmax(mr, fabs(r));
                    const cJSON *smp = cJSON_GetArrayItem(cJSON_GetArrayItem(js, b), j);
                    for (int k = 0; k < cJSON_GetArraySize(smp); k++) {
                        double rv = jat(smp, k);
                        sd = fmax(sd, fabs(lm[(b * nm + j) * UU + (int64_t)k * stride] - rv));
                        sr = fmax(sr, fabs(rv));
                    }
                }
            fprintf(stderr, "multimask IoU rel err %.3g, sampled logits rel err %.3g\n", md / mr,
                    sd / sr);
            CHECK(md / mr <= tol->iou, "multimask IoU rel err %.3g", md / mr);
            CHECK(sd / sr <= tol->lowres, "multimask logits rel err %.3g", sd / sr);
        }
        free(lm);
    }

    /* batches: max_batch 2 (a batch of 2 then 1) and one prompt at a time */
    s = lisa_sam_state_init(&st2, &m, 2, 1, npix);
    CHECK(s == LISA_OK, "state 2: %s", lisa_error_get());
    if (s != LISA_OK) goto done;
    CHECK(lisa_sam_set_embedding(&m, &st2, ref_emb) == LISA_OK, "set embedding 2");
    CHECK(lisa_sam_decode(&m, &st2, sparse, n, 1, 0, low, iou) == LISA_OK, "decode 2+1");
    for (int b = 0; b < n; b++)
        CHECK(lisa_sam_decode(&m, &st2, sparse + b * C, 1, 1, 0, low1 + b * UU, iou1 + b) ==
                  LISA_OK,
              "decode prompt %d alone", b);
    double eb = test_rel_err(low, low1, (size_t)(n * UU)), ei = test_rel_err(iou, iou1, (size_t)n);
    fprintf(stderr, "batched vs one at a time: low-res %.3g, IoU %.3g\n", eb, ei);
    CHECK(eb <= tol->batch && ei <= tol->batch, "batched vs single: %.3g %.3g", eb, ei);
    e = test_rel_err(low, ref_low, (size_t)(n * UU));
    CHECK(e <= tol->lowres, "low-res in batches of 2 rel err %.3g", e);

    test_encode_batch(&m, pp.chw, sparse, n, npix, tol);

done:
    lisa_sam_state_free(&st);
    lisa_sam_state_free(&st2);
    lisa_preprocessed_free(&pp);
    lisa_image_free(&img);
    free(ref_emb), free(ref_pe), free(ref_low), free(ref_up), free(sparse), free(ref_bits);
    free(emb), free(low), free(low1), free(up), free(mask);
    lisa_sam_model_free(&m);
}

int main(int argc, char **argv) {
    g_fix = argc > 1 ? argv[1] : "tests/fixtures";
    char *js = test_read_file(test_path(g_fix, "sam/meta.json"), NULL);
    cJSON *meta = js ? cJSON_Parse(js) : NULL;
    CHECK(meta != NULL, "sam/meta.json readable");
    char model_path[8192];
    snprintf(model_path, sizeof model_path, "%s", test_path(g_fix, "sam/model.safetensors"));
    lisa_backend *be = NULL;
    CHECK(lisa_backend_cpu_init(&be, 0) == LISA_OK, "backend");
    if (meta && be) {
        test_model(be, meta, model_path, &k_tol_cpu);
        test_bad_checkpoints(be, model_path);
    }
    lisa_backend_free(be);
    /* The same on the CUDA backend in fp32 when one is present (required
     * under LISA_REQUIRE_CUDA). */
    lisa_backend *gpu = meta ? test_cuda_open("test-sam") : NULL;
    if (gpu) {
        test_model(gpu, meta, model_path, &k_tol_cuda);
        lisa_backend_free(gpu);
    }
    cJSON_Delete(meta);
    free(js);
    return test_finish("test-sam");
}
