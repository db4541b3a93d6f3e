/* test-lisa.c: LISA end to end against the reference (tests/fixtures/
 * lisa-tiny, written by tests/reference/gen_lisa.py, which follows LISA's
 * evaluate() step by step: full recompute without a KV cache, fp32).
 *
 * The converted model directory (scripts/convert-lisa.py's output, committed
 * as lisa-tiny/model) runs through the engine:
 *  - prompt ids equal LISA's tokenizer_image_token ids;
 *  - projected CLIP features of every image within 1e-5 relative;
 *  - greedy generated ids identical (generation cases);
 *  - [SEG] embeddings (text_hidden_fcs outputs) and SAM's low-res logits
 *    within 1e-4 relative (max |diff| / max |ref|), IoU predictions too;
 *  - binary masks identical except pixels whose reference logit is within
 *    1e-4 of 0 (their count is recorded per mask; for one case the full
 *    logits are stored and the exception is checked pixel by pixel);
 *  - all cases in one engine batch give the same results as one at a time.
 * With LISA_TEST_DEVICE=cuda the engine runs on the CUDA backend in fp32
 * under the same tolerances (scripts/gpu-check.sh does this); with
 * LISA_REQUIRE_CUDA=1 a missing CUDA device fails the test. */
#include <cJSON.h>

#include "clip.h"
#include "sam.h"
#include "engine.h"
#include "preprocess.h"
#include "prompt.h"
#include "testutil.h"

#define TOL_FEAT 1e-5
#define TOL_SEG 1e-4


/* The user message of a prompt: between "<im_end>\n" and " ASSISTANT:". */
static char *user_of(const char *prompt) {
    const char *a = strstr(prompt, "<im_end>\n"), *b = strstr(prompt, " ASSISTANT:");
    if (!a || !b || b < a) return NULL;
    a += strlen("<im_end>\n");
    char *s = malloc((size_t)(b - a) + 1);
    memcpy(s, a, (size_t)(b - a));
    s[b - a] = 0;
    return s;
}

static void check_features(const char *fix, const cJSON *images, const char *model) {
    lisa_backend *be;
    CHECK(lisa_backend_cpu_init(&be, 2) == LISA_OK, "backend");
    lisa_clip_config cfg;
    lisa_clip_model clip;
    lisa_projector proj;
    lisa_clip_state s;
    CHECK(lisa_clip_config_load(&cfg, model) == LISA_OK, "clip config: %s", lisa_error_get());
    CHECK(lisa_clip_model_load(&clip, &cfg, model, "model.vision_tower.vision_model.", -2, be,
                               LISA_DTYPE_F32) == LISA_OK, "clip: %s", lisa_error_get());
    CHECK(lisa_projector_load(&proj, model, "model.mm_projector.", LISA_PROJECTOR_LINEAR,
                              cfg.hidden_size, be, LISA_DTYPE_F32) == LISA_OK, "projector: %s",
          lisa_error_get());
    CHECK(lisa_clip_state_init(&s, &clip, &proj, 1) == LISA_OK, "clip state");
    const cJSON *im;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/lisa-tiny/expected", fix);
    cJSON_ArrayForEach(im, images) {
        const char *file = cJSON_GetObjectItem(im, "file")->valuestring;
        char path[4200];
        snprintf(path, sizeof path, "%s/images/%s", fix, file);
        lisa_image img;
        lisa_preprocessed pp;
        CHECK(lisa_image_load(&img, path, NULL) == LISA_OK, "%s: %s", path, lisa_error_get());
        CHECK(lisa_preprocess_clip(&img, cfg.image_size, &pp) == LISA_OK, "preprocess");
        const cJSON *shape = cJSON_GetObjectItem(im, "projected_shape");
        size_t n = (size_t)cJSON_GetArrayItem(shape, 0)->valueint * (size_t)cJSON_GetArrayItem(shape, 1)->valueint;
        float *ref = test_read_f32(dir, cJSON_GetObjectItem(im, "projected")->valuestring, n);
        float *got = malloc(n * sizeof *got);
        CHECK(lisa_clip_forward(&clip, &s, pp.chw, 1, NULL) == LISA_OK, "clip forward");
        CHECK(lisa_clip_project(&proj, &s, got) == LISA_OK, "project");
        if (ref) {
            double e = test_rel_err(got, ref, n);
            CHECK(e <= TOL_FEAT, "%s: projected features rel err %.3g", file, e);
            fprintf(stderr, "%s: projected CLIP features rel err %.3g\n", file, e);
        }
        free(ref);
        free(got);
        lisa_preprocessed_free(&pp);
        lisa_image_free(&img);
    }
    lisa_clip_state_free(&s);
    lisa_projector_free(&proj);
    lisa_clip_model_free(&clip);
    lisa_backend_free(be);
}

/* SAM alone on the converted model: the image embedding's checksums and, fed
 * the reference [SEG] embeddings, the low-res logits of every case. */
static void check_sam(const char *fix, const cJSON *images, const cJSON *cases, const char *model) {
    lisa_backend *be;
    CHECK(lisa_backend_cpu_init(&be, 2) == LISA_OK, "backend");
    lisa_sam_model m;
    lisa_sam_options o = {"model.visual_model.", 0, 2};
    lisa_sam_state s;
    CHECK(lisa_sam_model_load(&m, model, be, LISA_DTYPE_F32, &o) == LISA_OK, "sam: %s", lisa_error_get());
    CHECK(lisa_sam_state_init(&s, &m, 4, 1, 1 << 20) == LISA_OK, "sam state");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/lisa-tiny/expected", fix);
    int G = m.cfg.grid, C = m.cfg.dim;
    float *emb = malloc((size_t)G * G * C * sizeof(float));
    const cJSON *im;
    cJSON_ArrayForEach(im, images) {
        const char *file = cJSON_GetObjectItem(im, "file")->valuestring;
        char path[4200];
        snprintf(path, sizeof path, "%s/images/%s", fix, file);
        lisa_image img;
        lisa_preprocessed pp;
        CHECK(lisa_image_load(&img, path, NULL) == LISA_OK, "%s", path);
        CHECK(lisa_preprocess_sam(&img, 1024, 1024, &pp) == LISA_OK, "sam preprocess");
        CHECK(lisa_sam_encode(&m, &s, pp.chw, emb) == LISA_OK, "encode: %s", lisa_error_get());
        double sum = 0, as = 0;
        for (int i = 0; i < G * G * C; i++) {
            sum += emb[i];
            as += fabs(emb[i]);
        }
        double rsum = cJSON_GetObjectItem(im, "sam_embedding_sum")->valuedouble;
        double ras = cJSON_GetObjectItem(im, "sam_embedding_abs_sum")->valuedouble;
        const cJSON *f8 = cJSON_GetObjectItem(im, "sam_embedding_first8");
        double e8 = 0;
        for (int c = 0; c < 8; c++) /* reference emb[0, c, 0, 0]: channel c at pixel (0, 0) */
            e8 = fmax(e8, fabs(emb[c] - cJSON_GetArrayItem(f8, c)->valuedouble));
        CHECK(fabs(as - ras) <= 1e-5 * ras && fabs(sum - rsum) <= 1e-5 * ras && e8 <= 1e-4,
              "%s: SAM embedding abs sum %.6f vs %.6f, sum %.6f vs %.6f, first 8 off by %.3g", file,
              as, ras, sum, rsum, e8);
        /* the reference [SEG] embeddings of this image's cases through the decoder */
        const cJSON *c;
        cJSON_ArrayForEach(c, cases) {
            if (strcmp(cJSON_GetObjectItem(c, "image")->valuestring, file)) continue;
            const cJSON *sh = cJSON_GetObjectItem(c, "seg_embeddings_shape");
            int n = cJSON_GetArrayItem(sh, 0)->valueint, E = cJSON_GetArrayItem(sh, 1)->valueint;
            float *se = test_read_f32(dir, cJSON_GetObjectItem(c, "seg_embeddings")->valuestring, (size_t)n * E);
            float *low = test_read_f32(dir, cJSON_GetObjectItem(c, "lowres_logits")->valuestring, (size_t)n * 65536);
            float *got = malloc((size_t)n * 65536 * sizeof(float));
            if (se && low && got) {
                CHECK(lisa_sam_decode(&m, &s, se, n, 1, 0, got, NULL) == LISA_OK, "decode: %s", lisa_error_get());
                double e = test_rel_err(got, low, (size_t)n * 65536);
                CHECK(e <= TOL_SEG, "%s: SAM low-res logits from the reference [SEG] embeddings: rel err %.3g",
                      cJSON_GetObjectItem(c, "name")->valuestring, e);
                fprintf(stderr, "%s: SAM alone (reference [SEG] embeddings): low-res rel err %.3g\n",
                        cJSON_GetObjectItem(c, "name")->valuestring, e);
            }
            free(se);
            free(low);
            free(got);
        }
        lisa_preprocessed_free(&pp);
        lisa_image_free(&img);
    }
    free(emb);
    lisa_sam_state_free(&s);
    lisa_sam_model_free(&m);
    lisa_backend_free(be);
}

/* Compares one response with its case; returns the worst relative error. */
static double check_case(const char *dir, const char *fix, const cJSON *c, const lisa_response *r,
                         int verbose) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    CHECK(r->status == LISA_OK, "%s: %s", name, r->error);
    if (r->status != LISA_OK) return INFINITY;
    const cJSON *gen = cJSON_GetObjectItem(c, "generated");
    if (gen) {
        int same = r->n_ids == cJSON_GetArraySize(gen);
        for (int i = 0; same && i < r->n_ids; i++) same = r->ids[i] == cJSON_GetArrayItem(gen, i)->valueint;
        CHECK(same, "%s: generated ids differ from the reference", name);
    }
    const cJSON *sshape = cJSON_GetObjectItem(c, "seg_embeddings_shape");
    int nseg = cJSON_GetArrayItem(sshape, 0)->valueint, E = cJSON_GetArrayItem(sshape, 1)->valueint;
    CHECK(r->n_masks == nseg, "%s: %d masks, reference %d", name, r->n_masks, nseg);
    if (r->n_masks != nseg) return INFINITY;
    double worst = 0;
    float *se = test_read_f32(dir, cJSON_GetObjectItem(c, "seg_embeddings")->valuestring, (size_t)nseg * E);
    if (se) {
        double e = test_rel_err(r->seg_embeddings, se, (size_t)nseg * E);
        CHECK(e <= TOL_SEG, "%s: [SEG] embeddings rel err %.3g", name, e);
        if (verbose) fprintf(stderr, "%s: [SEG] embeddings rel err %.3g\n", name, e);
        if (e > worst) worst = e;
    }
    free(se);
    float *low = test_read_f32(dir, cJSON_GetObjectItem(c, "lowres_logits")->valuestring, (size_t)nseg * 65536);
    const cJSON *ious = cJSON_GetObjectItem(c, "iou_predictions");
    const cJSON *near = cJSON_GetObjectItem(c, "near_zero_logits");
    const cJSON *masks = cJSON_GetObjectItem(c, "masks");
    const cJSON *full = cJSON_GetObjectItem(c, "logits");
    float *logits = full ? test_read_f32(dir, full->valuestring, (size_t)r->w * r->h * nseg) : NULL;
    for (int k = 0; k < nseg; k++) {
        if (low && r->masks[k].lowres) {
            double e = test_rel_err(r->masks[k].lowres, low + (size_t)k * 65536, 65536);
            CHECK(e <= TOL_SEG, "%s mask %d: low-res logits rel err %.3g", name, k, e);
            if (e > worst) worst = e;
        }
        float iou_ref = (float)cJSON_GetArrayItem(ious, k)->valuedouble;
        CHECK(fabsf(r->masks[k].iou - iou_ref) <= TOL_SEG * fmaxf(1.0f, fabsf(iou_ref)),
              "%s mask %d: IoU %g, reference %g", name, k, r->masks[k].iou, iou_ref);
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, cJSON_GetArrayItem(masks, k)->valuestring);
        lisa_image m;
        CHECK(lisa_image_load(&m, path, NULL) == LISA_OK, "%s: %s", path, lisa_error_get());
        if (m.w != r->w || m.h != r->h) {
            CHECK(0, "%s mask %d: size %dx%d vs %dx%d", name, k, m.w, m.h, r->w, r->h);
            lisa_image_free(&m);
            continue;
        }
        int diff = 0, unexplained = 0;
        for (int i = 0; i < r->w * r->h; i++) {
            int ref = m.rgb[3 * i] != 0;
            if (ref != r->masks[k].mask[i]) {
                diff++;
                if (logits && fabsf(logits[(size_t)k * r->w * r->h + i]) >= 1e-4f) unexplained++;
            }
        }
        int allowed = cJSON_GetArrayItem(near, k)->valueint;
        CHECK(diff <= allowed && unexplained == 0,
              "%s mask %d: %d pixels differ (%d with |ref logit| < 1e-4; %d not near 0)", name, k,
              diff, allowed, unexplained);
        if (verbose)
            fprintf(stderr, "%s mask %d: %d of %d pixels differ (%d reference logits near 0)\n",
                    name, k, diff, r->w * r->h, allowed);
        lisa_image_free(&m);
    }
    free(low);
    free(logits);
    (void)fix;
    return worst;
}

int main(int argc, char **argv) {
    const char *fix = argc > 1 ? argv[1] : "tests/fixtures";
    char dir[4096], model[4096];
    snprintf(dir, sizeof dir, "%s/lisa-tiny/expected", fix);
    snprintf(model, sizeof model, "%s/lisa-tiny/model", fix);
    char *text = test_read_file(test_path(dir, "cases.json"), NULL);
    CHECK(text != NULL, "lisa-tiny/expected/cases.json missing");
    if (!text) return test_finish("test-lisa");
    cJSON *root = cJSON_Parse(text);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    int nc = cJSON_GetArraySize(cases);
    CHECK(nc >= 4, "%d cases", nc);

    check_features(fix, cJSON_GetObjectItem(root, "images"), model);
    check_sam(fix, cJSON_GetObjectItem(root, "images"), cases, model);

    lisa_engine_params p;
    memset(&p, 0, sizeof p);
    p.model_dir = model;
    const char *dev = getenv("LISA_TEST_DEVICE");
    test_cuda_require("test-lisa");
    p.backend = dev && !strcmp(dev, "cuda") ? LISA_BACKEND_CUDA : LISA_BACKEND_CPU;
    if (p.backend == LISA_BACKEND_CUDA) fprintf(stderr, "engine on cuda, fp32\n");
    p.threads = 2;
    p.dtype = LISA_DTYPE_F32;
    p.max_batch = nc;
    p.max_new_tokens = 32;
    lisa_engine *e = NULL;
    lisa_status st = lisa_engine_init(&e, &p);
    CHECK(st == LISA_OK, "engine: %s", lisa_error_get());
    if (st != LISA_OK) return test_finish("test-lisa");
    lisa_engine_keep_lowres(e, 1);

    lisa_request *rq = calloc((size_t)nc, sizeof *rq);
    char **users = calloc((size_t)nc, sizeof *users), **paths = calloc((size_t)nc, sizeof *paths);
    lisa_tokenizer *tok = NULL;
    char tokp[4200], addp[4200];
    snprintf(tokp, sizeof tokp, "%s/tokenizer.model", model);
    snprintf(addp, sizeof addp, "%s/added_tokens.json", model);
    CHECK(lisa_tokenizer_load(&tok, tokp, addp) == LISA_OK, "tokenizer");
    for (int k = 0; k < nc; k++) {
        const cJSON *c = cJSON_GetArrayItem(cases, k);
        const cJSON *reply = cJSON_GetObjectItem(c, "reply");
        users[k] = user_of(cJSON_GetObjectItem(c, "prompt")->valuestring);
        paths[k] = malloc(4200);
        snprintf(paths[k], 4200, "%s/images/%s", fix, cJSON_GetObjectItem(c, "image")->valuestring);
        rq[k].id = cJSON_GetObjectItem(c, "name")->valuestring;
        rq[k].image_path = paths[k];
        rq[k].prompt = users[k];
        rq[k].answer = cJSON_IsString(reply) ? reply->valuestring : NULL;
        rq[k].max_new_tokens = 32;
        /* prompt ids as LISA's tokenizer_image_token */
        int32_t *ids;
        size_t n, pos;
        CHECK(lisa_prompt_tokenize(tok, rq[k].prompt, rq[k].answer, &ids, &n, &pos) == LISA_OK, "tokenize");
        const cJSON *want = cJSON_GetObjectItem(c, "input_ids");
        int same = (int)n == cJSON_GetArraySize(want);
        for (size_t i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        CHECK(same, "%s: prompt ids differ from LISA's", rq[k].id);
        /* the whole conversation decoded as transformers does (chat.py's text) */
        const cJSON *gen = cJSON_GetObjectItem(c, "generated"), *want_text = cJSON_GetObjectItem(c, "text");
        if (gen && cJSON_IsString(want_text)) {
            int ng = cJSON_GetArraySize(gen);
            int32_t *all = malloc((n + (size_t)ng) * sizeof *all);
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                if (ids[i] != LISA_IMAGE_TOKEN) all[m++] = ids[i];
            for (int i = 0; i < ng; i++) all[m++] = cJSON_GetArrayItem(gen, i)->valueint;
            char *txt = NULL;
            CHECK(lisa_tokenizer_decode_hf(tok, all, m, &txt) == LISA_OK && txt &&
                      !strcmp(txt, want_text->valuestring),
                  "%s: decoded text '%s', transformers '%s'", rq[k].id, txt ? txt : "",
                  want_text->valuestring);
            free(txt);
            free(all);
        }
        free(ids);
    }
    lisa_tokenizer_free(tok);

    /* all together, then one at a time */
    lisa_response *all = calloc((size_t)nc, sizeof *all);
    CHECK(lisa_engine_run(e, rq, nc, all, NULL, NULL) == LISA_OK, "run: %s", lisa_error_get());
    double worst = 0;
    for (int k = 0; k < nc; k++) {
        double w = check_case(dir, fix, cJSON_GetArrayItem(cases, k), &all[k], 1);
        if (w > worst) worst = w;
    }
    fprintf(stderr, "worst [SEG]-embedding / low-res-logit rel err %.3g (tolerance %.0e)\n", worst, TOL_SEG);
    for (int k = 0; k < nc; k++) {
        lisa_response one;
        CHECK(lisa_engine_run(e, &rq[k], 1, &one, NULL, NULL) == LISA_OK, "run one");
        check_case(dir, fix, cJSON_GetArrayItem(cases, k), &one, 0);
        CHECK(one.n_masks == all[k].n_masks, "%s: batch vs single mask count", rq[k].id);
        lisa_response_free(&one);
        lisa_response_free(&all[k]);
        free(users[k]);
        free(paths[k]);
    }
    free(all);
    free(rq);
    free(users);
    free(paths);
    lisa_engine_free(e);
    cJSON_Delete(root);
    free(text);
    return test_finish("test-lisa");
}
