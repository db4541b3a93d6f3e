/* test-seg-head.c: text_hidden_fcs (seg-head.h) against the PyTorch
 * reference on the tiny LISA fixture: for every case of
 * lisa-tiny/expected/cases.json, the LLM hidden states at its [SEG]s
 * (seg_hidden, (n, H)) through the head give seg_embeddings ((n, E)) within
 * 1e-5 relative (max |diff| / max |ref|), with scratch for all rows at once
 * and for one row (chunked). Bad model directories fail with the reason.
 * The same on the CUDA backend in fp32 when one is present (1e-4: a first
 * guess, cuBLASLt's accumulation order differs). */
#include <cJSON.h>

#include "seg-head.h"
#include "testutil.h"

#define TOL 1e-5
#define TOL_CUDA 1e-4

/* Every case through a head with scratch for max_rows rows; returns the
 * worst relative error. */
static double check_cases(const char *dir, const char *model, const cJSON *cases,
                          lisa_backend *be, int max_rows, double tol) {
    double worst = 0;
    lisa_seg_head h;
    lisa_status st = lisa_seg_head_load(&h, model, be, LISA_DTYPE_F32, 16, max_rows);
    CHECK(st == LISA_OK, "load: %s", lisa_error_get());
    if (st != LISA_OK) return INFINITY;
    CHECK(h.dim == 32, "E = %d, expected 32 (the fixture's SAM prompt dim)", h.dim);
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const cJSON *hs = cJSON_GetObjectItem(c, "seg_hidden_shape");
        int n = cJSON_GetArrayItem(hs, 0)->valueint, C = cJSON_GetArrayItem(hs, 1)->valueint;
        CHECK(C == h.hidden, "%s: hidden width %d", name, C);
        float *in = test_read_f32(dir, cJSON_GetObjectItem(c, "seg_hidden")->valuestring, (size_t)n * C);
        float *ref = test_read_f32(dir, cJSON_GetObjectItem(c, "seg_embeddings")->valuestring,
                                   (size_t)n * h.dim);
        float *out = calloc((size_t)n * (size_t)h.dim, sizeof *out);
        if (in && ref && out && C == h.hidden) {
            st = lisa_seg_head_forward(&h, in, n, out);
            CHECK(st == LISA_OK, "%s: forward: %s", name, lisa_error_get());
            double e = test_rel_err(out, ref, (size_t)n * h.dim);
            CHECK(e <= tol, "%s (%d rows, %d per chunk): rel err %.3g > %.0e", name, n, max_rows, e, tol);
            if (e > worst) worst = e;
        }
        free(in);
        free(ref);
        free(out);
    }
    CHECK(lisa_seg_head_forward(&h, NULL, 0, NULL) == LISA_OK, "zero rows");
    lisa_seg_head_free(&h);
    CHECK(h.st == NULL && h.in.data == NULL, "free empties the head");
    return worst;
}

static void check_bad(const char *fix, const char *model, lisa_backend *be) {
    lisa_seg_head h;
    CHECK(lisa_seg_head_load(&h, model, be, LISA_DTYPE_F32, 16, 0) == LISA_ERR_ARG, "max_rows 0");
    lisa_status st = lisa_seg_head_load(&h, model, be, LISA_DTYPE_F32, 24, 4);
    CHECK(st == LISA_ERR_SHAPE && strstr(lisa_error_get(), "text_hidden_fcs"),
          "a wrong hidden size names the tensor: %s %s", lisa_status_str(st), lisa_error_get());
    /* a safetensors file without the head (the SAM fixture) */
    st = lisa_seg_head_load(&h, test_path(fix, "sam/model.safetensors"), be, LISA_DTYPE_F32, 16, 4);
    CHECK(st == LISA_ERR_MISSING && strstr(lisa_error_get(), "model.text_hidden_fcs.0.2.weight"),
          "missing head: %s %s", lisa_status_str(st), lisa_error_get());
    st = lisa_seg_head_load(&h, test_path(fix, "no-such-model"), be, LISA_DTYPE_F32, 16, 4);
    CHECK(st != LISA_OK && strstr(lisa_error_get(), "no-such-model"), "missing dir: %s", lisa_error_get());
    lisa_seg_head_free(&h);
}

int main(int argc, char **argv) {
    const char *fix = argc > 1 ? argv[1] : "tests/fixtures";
    char dir[4096], model[4096];
    snprintf(dir, sizeof dir, "%s/lisa-tiny/expected", fix);
    snprintf(model, sizeof model, "%s/lisa-tiny/model", fix);
    char *text = test_read_file(test_path(dir, "cases.json"), NULL);
    CHECK(text != NULL, "lisa-tiny/expected/cases.json missing");
    if (!text) return test_finish("test-seg-head");
    cJSON *root = cJSON_Parse(text);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    CHECK(cJSON_GetArraySize(cases) >= 4, "%d cases", cJSON_GetArraySize(cases));

    lisa_backend *be = NULL;
    CHECK(lisa_backend_cpu_init(&be, 2) == LISA_OK, "cpu backend");
    if (be) {
        double e32 = check_cases(dir, model, cases, be, 32, TOL);
        double e1 = check_cases(dir, model, cases, be, 1, TOL);
        fprintf(stderr, "test-seg-head: cpu fp32 worst rel err %.3g (one chunk), %.3g (1-row chunks), "
                        "tolerance %.0e\n", e32, e1, TOL);
        check_bad(fix, model, be);
        lisa_backend_free(be);
    }
    lisa_backend *gpu = test_cuda_open("test-seg-head");
    if (gpu) {
        double e = check_cases(dir, model, cases, gpu, 1, TOL_CUDA);
        fprintf(stderr, "test-seg-head: cuda fp32 worst rel err %.3g, tolerance %.0e\n", e, TOL_CUDA);
        lisa_backend_free(gpu);
    }
    cJSON_Delete(root);
    free(text);
    return test_finish("test-seg-head");
}
