/* vision.cu: CUDA twins of the CPU backend's vision ops (ops-vision-cpu.c):
 * layernorm, activations, im2col, the 2x2 transposed convolution, SAM's
 * window partitioning, torch-exact bilinear resize, column copies,
 * transposes, and non-causal attention with SAM's decomposed relative
 * positions. Arithmetic in fp32, storage in the tensor's dtype. */
#include "attend-tc.cuh"
#include "attend.cuh"

#define LN_THREADS 256

template <typename T>
__global__ void layernorm_kernel(T *out, const T *x, const void *w, lisa_dtype wt, const void *b,
                                 lisa_dtype bt, int64_t C, float eps) {
    __shared__ float sh[32];
    const T *xr = x + (int64_t)blockIdx.x * C;
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) s += cu_ld(xr, j);
    float mean = block_sum(s, sh) / (float)C;
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
        float d = cu_ld(xr, j) - mean;
        ss += d * d;
    }
    float r = rsqrtf(block_sum(ss, sh) / (float)C + eps);
    T *o = out + (int64_t)blockIdx.x * C;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
        cu_st(o, j, (cu_ld(xr, j) - mean) * r * ld_any(w, wt, j) + ld_any(b, bt, j));
}

lisa_status cuda_op_layernorm(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                              const lisa_tensor *w, const lisa_tensor *b, float eps) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t C = x->shape[x->ndim - 1], n = lisa_tensor_nelem(x) / C;
    LISA_ASSERT(lisa_tensor_nelem(w) == C && lisa_tensor_nelem(b) == C && out->dtype == x->dtype);
    if (n == 0) return LISA_OK;
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(layernorm_kernel<T>, (unsigned)n, LN_THREADS, 0, c->stream)(
                                      (T *)out->data, (const T *)x->data, w->data, w->dtype,
                                      b->data, b->dtype, C, eps));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

template <typename T>
__global__ void activation_kernel(T *out, const T *x, int64_t n, int act) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = cu_ld(x, i), r;
        switch (act) {
        case LISA_ACT_GELU: r = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        case LISA_ACT_QUICK_GELU: r = v * (1.0f / (1.0f + expf(-1.702f * v))); break;
        case LISA_ACT_RELU: r = v > 0.0f ? v : 0.0f; break;
        default: r = v * (1.0f / (1.0f + expf(-v))); break;
        }
        cu_st(out, i, r);
    }
}

lisa_status cuda_op_activation(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                               lisa_act act) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t n = lisa_tensor_nelem(x);
    LISA_ASSERT(lisa_tensor_nelem(out) == n && out->dtype == x->dtype);
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(activation_kernel<T>, cuda_blocks(n, 256), 256, 0, c->stream)(
                                      (T *)out->data, (const T *)x->data, n, (int)act));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

template <typename T>
__global__ void im2col_kernel(T *out, const T *x, int64_t B, int64_t H, int64_t W, int64_t C,
                              int64_t Ho, int64_t Wo, int k, int stride, int pad, int cf) {
    int64_t cols = C * k * k, total = B * Ho * Wo * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, col = i % cols;
        int64_t cc = col / (k * k), ky = (col / k) % k, kx = col % k;
        int64_t b = r / (Ho * Wo), oy = (r / Wo) % Ho, ox = r % Wo;
        int64_t y = oy * stride - pad + ky, xx = ox * stride - pad + kx;
        float v = 0.0f;
        if (y >= 0 && y < H && xx >= 0 && xx < W)
            v = cf ? cu_ld(x, ((b * C + cc) * H + y) * W + xx) : cu_ld(x, ((b * H + y) * W + xx) * C + cc);
        cu_st(out, i, v);
    }
}

lisa_status cuda_op_im2col(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x, int k,
                           int stride, int pad, int channels_first) {
    cuda_ctx *c = cuda_ctx_of(be);
    LISA_ASSERT(x->ndim == 4 && k > 0 && stride > 0 && pad >= 0 && out->dtype == x->dtype);
    int64_t B = x->shape[0];
    int64_t H = channels_first ? x->shape[2] : x->shape[1];
    int64_t W = channels_first ? x->shape[3] : x->shape[2];
    int64_t C = channels_first ? x->shape[1] : x->shape[3];
    int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    int64_t total = B * Ho * Wo * C * k * k;
    LISA_ASSERT(lisa_tensor_nelem(out) == total);
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(im2col_kernel<T>, cuda_blocks(total, 256), 256, 0, c->stream)(
                                      (T *)out->data, (const T *)x->data, B, H, W, C, Ho, Wo, k,
                                      stride, pad, channels_first));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

/* one thread per output element; the sum over C input channels in fp32 */
template <typename T>
__global__ void conv_t2x2_kernel(T *out, const T *x, const void *w, lisa_dtype wt, const void *bias,
                                 lisa_dtype bt, int64_t B, int64_t H, int64_t W, int64_t C,
                                 int64_t O) {
    int64_t total = B * 2 * H * 2 * W * O;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = i % O, p = i / O, ox = p % (2 * W), oy = (p / (2 * W)) % (2 * H),
                b = p / (4 * H * W);
        int64_t yy = oy / 2, xx = ox / 2, a = oy % 2, cb = ox % 2;
        const T *xr = x + ((b * H + yy) * W + xx) * C;
        float acc = 0.0f;
        for (int64_t cc = 0; cc < C; cc++) acc += cu_ld(xr, cc) * ld_any(w, wt, ((cc * O + o) * 2 + a) * 2 + cb);
        if (bias) acc += ld_any(bias, bt, o);
        cu_st(out, i, acc);
    }
}

lisa_status cuda_op_conv_transpose_2x2(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                       const lisa_tensor *w, const lisa_tensor *bias) {
    cuda_ctx *c = cuda_ctx_of(be);
    LISA_ASSERT(x->ndim == 4 && w->ndim == 4 && w->shape[2] == 2 && w->shape[3] == 2);
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3], O = w->shape[1];
    LISA_ASSERT(w->shape[0] == C && lisa_tensor_nelem(out) == B * 4 * H * W * O);
    LISA_ASSERT(out->dtype == x->dtype);
    int64_t total = B * 4 * H * W * O;
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(conv_t2x2_kernel<T>, cuda_blocks(total, 256), 256, 0, c->stream)(
                                      (T *)out->data, (const T *)x->data, w->data, w->dtype,
                                      bias ? bias->data : NULL, bias ? bias->dtype : w->dtype, B,
                                      H, W, C, O));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

/* dir 0: partition (x grid -> windows), 1: unpartition (windows -> x grid) */
template <typename T>
__global__ void window_kernel(T *out, const T *x, int64_t B, int64_t H, int64_t W, int64_t C,
                              int64_t ws, int dir) {
    int64_t nh = (H + ws - 1) / ws, nw = (W + ws - 1) / ws;
    int64_t total = dir == 0 ? B * nh * nw * ws * ws * C : B * H * W * C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t cc = i % C, r = i / C;
        if (dir == 0) {
            int64_t tx = r % ws, ty = (r / ws) % ws, wx = (r / (ws * ws)) % nw,
                    wy = (r / (ws * ws * nw)) % nh, b = r / (ws * ws * nw * nh);
            int64_t y = wy * ws + ty, xx = wx * ws + tx;
            out[i] = (y < H && xx < W) ? x[((b * H + y) * W + xx) * C + cc] : cu_round_zero<T>();
        } else {
            int64_t xx = r % W, y = (r / W) % H, b = r / (W * H);
            int64_t wy = y / ws, wx = xx / ws, ty = y % ws, tx = xx % ws;
            out[i] = x[((((b * nh + wy) * nw + wx) * ws + ty) * ws + tx) * C + cc];
        }
    }
}

lisa_status cuda_op_window_partition(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                     int ws) {
    cuda_ctx *c = cuda_ctx_of(be);
    LISA_ASSERT(x->ndim == 4 && ws > 0 && out->dtype == x->dtype);
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    int64_t total = B * ((H + ws - 1) / ws) * ((W + ws - 1) / ws) * ws * ws * C;
    LISA_ASSERT(lisa_tensor_nelem(out) == total);
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(window_kernel<T>, cuda_blocks(total, 256), 256, 0, c->stream)(
                                      (T *)out->data, (const T *)x->data, B, H, W, C, ws, 0));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

lisa_status cuda_op_window_unpartition(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                       int ws) {
    cuda_ctx *c = cuda_ctx_of(be);
    LISA_ASSERT(out->ndim == 4 && ws > 0 && out->dtype == x->dtype);
    int64_t B = out->shape[0], H = out->shape[1], W = out->shape[2], C = out->shape[3];
    LISA_ASSERT(lisa_tensor_nelem(x) == B * ((H + ws - 1) / ws) * ((W + ws - 1) / ws) * ws * ws * C);
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(window_kernel<T>, cuda_blocks(B * H * W * C, 256), 256, 0, c->stream)(
                                      (T *)out->data, (const T *)x->data, B, H, W, C, ws, 1));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

/* torch 1.13 source index (cpu_resize_bilinear's rule): float scale, the
 * index kept in double, lambda1 = (float)(src - i0). */
__device__ __forceinline__ void bilinear_index(int64_t o, int64_t in, float scale, int64_t *i0,
                                               int64_t *i1, float *l1) {
    double src = (double)scale * ((double)o + 0.5) - 0.5;
    if (src < 0.0) src = 0.0;
    int64_t a = (int64_t)src;
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a + (a < in - 1 ? 1 : 0);
    *l1 = (float)(src - (double)a);
}

template <typename T>
__global__ void resize_bilinear_kernel(T *out, const T *x, int64_t N, int64_t H, int64_t W,
                                       int64_t hc, int64_t wc, int64_t Ho, int64_t Wo, float sy,
                                       float sx) {
    int64_t total = N * Ho * Wo;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ox = i % Wo, oy = (i / Wo) % Ho, n = i / (Wo * Ho);
        int64_t y0, y1, x0, x1;
        float ly1, lx1;
        bilinear_index(oy, hc, sy, &y0, &y1, &ly1);
        bilinear_index(ox, wc, sx, &x0, &x1, &lx1);
        float ly0 = 1.0f - ly1, lx0 = 1.0f - lx1;
        const T *p0 = x + (n * H + y0) * W, *p1 = x + (n * H + y1) * W;
        float v = (cu_ld(p0, x0) * lx0 + cu_ld(p0, x1) * lx1) * ly0 +
                  (cu_ld(p1, x0) * lx0 + cu_ld(p1, x1) * lx1) * ly1;
        cu_st(out, i, v);
    }
}

lisa_status cuda_op_resize_bilinear(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x,
                                    int hc, int wc) {
    cuda_ctx *c = cuda_ctx_of(be);
    LISA_ASSERT(x->ndim == 3 && out->ndim == 3 && x->shape[0] == out->shape[0]);
    int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], Ho = out->shape[1], Wo = out->shape[2];
    LISA_ASSERT(hc > 0 && wc > 0 && hc <= H && wc <= W && out->dtype == x->dtype);
    float sy = (float)hc / (float)Ho, sx = (float)wc / (float)Wo;
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(resize_bilinear_kernel<T>, cuda_blocks(N * Ho * Wo, 256), 256, 0, c->stream)(
                                      (T *)out->data, (const T *)x->data, N, H, W, hc, wc, Ho, Wo,
                                      sy, sx));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

template <typename T>
__global__ void copy_cols_kernel(T *out, const T *src, int64_t n, int64_t C, int64_t c, int64_t c0) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * c;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = src[(i / c) * C + c0 + i % c];
}

lisa_status cuda_op_copy_cols(lisa_backend *be, lisa_tensor *out, const lisa_tensor *src, int c0) {
    cuda_ctx *c = cuda_ctx_of(be);
    int64_t C = src->shape[src->ndim - 1], n = lisa_tensor_nelem(src) / C;
    int64_t cc = out->shape[out->ndim - 1];
    LISA_ASSERT(c0 >= 0 && c0 + cc <= C && lisa_tensor_nelem(out) == n * cc);
    LISA_ASSERT(src->dtype == out->dtype);
    CUDA_DISPATCH_FLOAT(src->dtype, CUDA_KERNEL(copy_cols_kernel<T>, cuda_blocks(n * cc, 256), 256, 0, c->stream)(
                                        (T *)out->data, (const T *)src->data, n, C, cc, c0));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

template <typename T>
__global__ void transpose_kernel(T *out, const T *x, int64_t B, int64_t R, int64_t C) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < B * R * C;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i % R, cc = (i / R) % C, b = i / (R * C);
        out[i] = x[(b * R + r) * C + cc];
    }
}

lisa_status cuda_op_transpose(lisa_backend *be, lisa_tensor *out, const lisa_tensor *x) {
    cuda_ctx *c = cuda_ctx_of(be);
    LISA_ASSERT(x->ndim == 3 && out->dtype == x->dtype);
    int64_t B = x->shape[0], R = x->shape[1], C = x->shape[2];
    LISA_ASSERT(lisa_tensor_nelem(out) == B * R * C);
    CUDA_DISPATCH_FLOAT(x->dtype, CUDA_KERNEL(transpose_kernel<T>, cuda_blocks(B * R * C, 256), 256, 0, c->stream)(
                                      (T *)out->data, (const T *)x->data, B, R, C));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

#define FA_WARPS 4
#define FA_MAX_D ATTEND_MAX_D
#define FA_MAX_S 64

/* SAM's decomposed relative positions: key kk of an S x S grid adds the
 * query's row term rel[kk / S] and column term rel[S + kk % S], in that
 * order (segment-anything adds attn + rel_h + rel_w). */
struct attend_rel_bias {
    const float *rel;
    int64_t S;
    __device__ float operator()(float s, int64_t kk) const { return (s + rel[kk / S]) + rel[S + kk % S]; }
};

/* Non-causal attention, one warp per (batch, query, head), through the
 * online-softmax loop of attend.cuh; optional SAM relative terms precomputed
 * per query into shared memory (2*S values from the unscaled q). */
template <typename T>
__global__ void attention_full_kernel(T *out, const T *q, const T *k, const T *v, int64_t B,
                                      int64_t Lq, int64_t Lk, int64_t H, int64_t D, float scale,
                                      const void *rh, const void *rw, lisa_dtype rt, int64_t S) {
    __shared__ float qs[FA_WARPS][FA_MAX_D];
    __shared__ float qu[FA_WARPS][FA_MAX_D];
    __shared__ float rel[FA_WARPS][2 * FA_MAX_S];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t task = (int64_t)blockIdx.x * FA_WARPS + warp;
    if (task >= B * Lq * H) return;
    int64_t h = task % H, i = (task / H) % Lq, b = task / (H * Lq), ld = H * D;
    const T *qr = q + (b * Lq + i) * ld + h * D;
    for (int64_t d = lane; d < D; d += 32) {
        float u = cu_ld(qr, d);
        qu[warp][d] = u;
        qs[warp][d] = u * scale;
    }
    __syncwarp();
    if (rh) {
        int64_t yi = i / S, xi = i % S;
        for (int64_t t = lane; t < S; t += 32) {
            float da = 0.0f, db = 0.0f;
            for (int64_t d = 0; d < D; d++) {
                da += qu[warp][d] * ld_any(rh, rt, (yi - t + S - 1) * D + d);
                db += qu[warp][d] * ld_any(rw, rt, (xi - t + S - 1) * D + d);
            }
            rel[warp][t] = da;
            rel[warp][S + t] = db;
        }
        __syncwarp();
    }
    const T *kb = k + b * Lk * ld + h * D, *vb = v + b * Lk * ld + h * D;
    float acc[FA_MAX_D / 32], m, l;
    if (rh)
        attend_range(qs[warp], kb, vb, ld, D, 0, Lk, lane, &m, &l, acc, attend_rel_bias{rel[warp], S});
    else
        attend_range(qs[warp], kb, vb, ld, D, 0, Lk, lane, &m, &l, acc, attend_no_bias());
    T *o = out + (b * Lq + i) * ld + h * D;
    float inv = 1.0f / l;
    for (int r = 0; r < FA_MAX_D / 32; r++) {
        int64_t d = lane + 32 * r;
        if (d < D) cu_st(o, d, acc[r] * inv);
    }
}

/* The tensor-core path of attention_full (bf16/fp16, D 32, 64, 80 or 128):
 * a warp takes 16 queries of one (batch, head) through the steps of
 * attend-tc.cuh. The query tile is staged through shared memory with zero
 * rows past Lq, the last key tile likewise past Lk (so no load leaves the
 * tensors), and SAM's relative terms for the warp's 16 rows are computed
 * first into shared memory from the unscaled q, then added to each score in
 * fp32: (q.k * scale + rel_h) + rel_w. */
#define FA_TC_WARPS 2 /* shared memory: ~22 KB per warp at D 128, S 64 */
#define FA_TC_TILE TC_TILE

template <typename T, int D>
__global__ void attention_full_tc_kernel(T *out, const T *q, const T *k, const T *v, int64_t B,
                                         int64_t Lq, int64_t Lk, int64_t H, float scale,
                                         const void *rh, const void *rw, lisa_dtype rt,
                                         int64_t S) {
    using namespace nvcuda;
    __shared__ tc_smem<T> smem[FA_TC_WARPS];
    __shared__ __align__(32) T qst[FA_TC_WARPS][FA_TC_TILE * D];
    __shared__ __align__(32) T kst[FA_TC_WARPS][FA_TC_TILE * D];
    __shared__ __align__(32) T vst[FA_TC_WARPS][FA_TC_TILE * D];
    __shared__ float rel[FA_TC_WARPS][FA_TC_TILE][2 * FA_MAX_S];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t tiles = (Lq + FA_TC_TILE - 1) / FA_TC_TILE;
    /* (batch, head, tile), tiles fastest: a block's warps share K/V tiles in L1 */
    int64_t job = (int64_t)blockIdx.x * FA_TC_WARPS + warp;
    if (job >= B * tiles * H) return;
    int64_t i0 = job % tiles * FA_TC_TILE, h = job / tiles % H, b = job / (H * tiles);
    int64_t ld = H * D, rows = Lq - i0 < FA_TC_TILE ? Lq - i0 : FA_TC_TILE;
    tc_smem<T> &sm = smem[warp];
    T *Q = qst[warp];

    const T *qb = q + b * Lq * ld + h * D;
    for (int e = lane; e < FA_TC_TILE * D; e += 32) {
        int r = e / D;
        Q[e] = r < rows ? qb[(i0 + r) * ld + e % D] : cu_round_zero<T>();
    }
    __syncwarp();
    if (rh) {
        /* rel[r][t] = q_r . Rh[y_r - t + S - 1], rel[r][S + t] = q_r . Rw[x_r - t + S - 1] */
        for (int e = lane; e < FA_TC_TILE * S; e += 32) {
            int r = e / (int)S;
            int64_t t = e % S, i = i0 + r < Lq ? i0 + r : Lq - 1, yi = i / S, xi = i % S;
            float da = 0.0f, db = 0.0f;
            for (int64_t d = 0; d < D; d++) {
                float u = cu_ld(Q + r * D, d);
                da += u * ld_any(rh, rt, (yi - t + S - 1) * D + d);
                db += u * ld_any(rw, rt, (xi - t + S - 1) * D + d);
            }
            rel[warp][r][t] = da;
            rel[warp][r][S + t] = db;
        }
    }
    tc_state<D> w;
    tc_init<T, D>(w, sm, lane); /* its barriers also complete rel */
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[D / 16];
    for (int ds = 0; ds < D / 16; ds++) wmma::load_matrix_sync(qf[ds], Q + ds * 16, D);
    const T *kb = k + b * Lk * ld + h * D, *vb = v + b * Lk * ld + h * D;
    for (int64_t k0 = 0; k0 < Lk; k0 += FA_TC_TILE) {
        int64_t nk = Lk - k0 < FA_TC_TILE ? Lk - k0 : FA_TC_TILE;
        const T *kt = kb + k0 * ld, *vt = vb + k0 * ld;
        unsigned ldk = (unsigned)ld;
        if (nk < FA_TC_TILE) { /* the last, partial tile: staged with zero rows */
            for (int e = lane; e < FA_TC_TILE * D; e += 32) {
                int r = e / D;
                kst[warp][e] = r < nk ? kt[r * ld + e % D] : cu_round_zero<T>();
                vst[warp][e] = r < nk ? vt[r * ld + e % D] : cu_round_zero<T>();
            }
            __syncwarp();
            kt = kst[warp];
            vt = vst[warp];
            ldk = D;
        }
        tc_scores<T, D>(sm, qf, kt, ldk);
        float sv[8]; /* key 0 is always valid */
        for (int j = 0; j < 8; j++) {
            int64_t kk = k0 + w.c0 + j;
            float x = -INFINITY;
            if (kk < Lk) {
                x = sm.s[w.row * FA_TC_TILE + w.c0 + j] * scale;
                if (rh) x = (x + rel[warp][w.row][kk / S]) + rel[warp][w.row][S + kk % S];
            }
            sv[j] = x;
        }
        tc_softmax_pv<T, D>(w, sm, sv, vt, ldk, lane);
    }
    T *ob = out + b * Lq * ld + h * D;
    tc_finish<T, D>(w, sm, lane, [&](int r, int d, float val) {
        if (r < rows) cu_st(ob + (i0 + r) * ld, d, val);
    });
}

/* (through a pointer: a macro argument cannot hold the template's comma) */
#define FA_TC_LAUNCH(T, DD)                                                                     \
    do {                                                                                        \
        void (*attention_full_tc_kernel_)(T *, const T *, const T *, const T *, int64_t,       \
                                          int64_t, int64_t, int64_t, float, const void *,      \
                                          const void *, lisa_dtype, int64_t) =                 \
            attention_full_tc_kernel<T, DD>;                                                   \
        CUDA_KERNEL(attention_full_tc_kernel_, blocks, 32 * FA_TC_WARPS, 0, c->stream)(        \
            (T *)out->data, (const T *)q->data, (const T *)k->data, (const T *)v->data, B, Lq, \
            Lk, H, scale, rh, rw, rt, S);                                                      \
    } while (0)

#define FA_TC_DISPATCH_D(T)                                                                     \
    do {                                                                                        \
        if (D == 32) FA_TC_LAUNCH(T, 32);                                                      \
        else if (D == 64) FA_TC_LAUNCH(T, 64);                                                 \
        else if (D == 80) FA_TC_LAUNCH(T, 80);                                                 \
        else FA_TC_LAUNCH(T, 128);                                                             \
    } while (0)

/* Whether attention_full_tc_kernel serves this call: half precision, a head
 * dim it is built for, 32-byte aligned q/k/v rows for WMMA. */
static bool attention_full_tc_fits(const lisa_tensor *q, const lisa_tensor *k,
                                   const lisa_tensor *v, int64_t D) {
    if (D != 32 && D != 64 && D != 80 && D != 128) return false;
    if ((q->shape[2] * D * 2) % 32 != 0) return false;
    return tc_operands_fit(q, k, v);
}

static lisa_status attention_full_tc(cuda_ctx *c, lisa_tensor *out, const lisa_tensor *q,
                                     const lisa_tensor *k, const lisa_tensor *v, float scale,
                                     const void *rh, const void *rw, lisa_dtype rt, int64_t S) {
    int64_t B = q->shape[0], Lq = q->shape[1], H = q->shape[2], D = q->shape[3], Lk = k->shape[1];
    int64_t jobs = B * ((Lq + FA_TC_TILE - 1) / FA_TC_TILE) * H;
    unsigned blocks = (unsigned)((jobs + FA_TC_WARPS - 1) / FA_TC_WARPS);
    if (q->dtype == LISA_DTYPE_BF16)
        FA_TC_DISPATCH_D(__nv_bfloat16);
    else
        FA_TC_DISPATCH_D(__half);
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}

lisa_status cuda_op_attention_full(lisa_backend *be, lisa_tensor *out, const lisa_tensor *q,
                                   const lisa_tensor *k, const lisa_tensor *v, float scale,
                                   const lisa_tensor *rel_h, const lisa_tensor *rel_w) {
    cuda_ctx *c = cuda_ctx_of(be);
    LISA_ASSERT(q->ndim == 4 && k->ndim == 4 && v->ndim == 4);
    int64_t B = q->shape[0], Lq = q->shape[1], H = q->shape[2], D = q->shape[3], Lk = k->shape[1];
    LISA_ASSERT(k->shape[0] == B && k->shape[2] == H && k->shape[3] == D);
    LISA_ASSERT(lisa_tensor_nelem(out) == B * Lq * H * D && q->dtype == k->dtype && out->dtype == q->dtype);
    LISA_ASSERT(v->dtype == q->dtype && lisa_tensor_nelem(v) == lisa_tensor_nelem(k));
    int64_t S = 0;
    if (rel_h) {
        S = (rel_h->shape[0] + 1) / 2;
        LISA_ASSERT(rel_w && S * S == Lq && Lq == Lk && rel_h->shape[1] == D);
        if (S > FA_MAX_S)
            return lisa_error_set(LISA_ERR_UNSUPPORTED, "cuda attention_full: grid %lld > %d",
                                  (long long)S, FA_MAX_S);
    }
    if (D > FA_MAX_D)
        return lisa_error_set(LISA_ERR_UNSUPPORTED, "cuda attention_full: head dim %lld > %d",
                              (long long)D, FA_MAX_D);
    if (B * Lq * H == 0) return LISA_OK;
    if (Lk > 0 && attention_full_tc_fits(q, k, v, D))
        return attention_full_tc(c, out, q, k, v, scale, rel_h ? rel_h->data : NULL,
                                 rel_w ? rel_w->data : NULL,
                                 rel_h ? rel_h->dtype : LISA_DTYPE_F32, S);
    unsigned blocks = (unsigned)((B * Lq * H + FA_WARPS - 1) / FA_WARPS);
    CUDA_DISPATCH_FLOAT(q->dtype, CUDA_KERNEL(attention_full_kernel<T>, blocks, 32 * FA_WARPS, 0, c->stream)(
                                      (T *)out->data, (const T *)q->data, (const T *)k->data,
                                      (const T *)v->data, B, Lq, Lk, H, D, scale,
                                      rel_h ? rel_h->data : NULL, rel_w ? rel_w->data : NULL,
                                      rel_h ? rel_h->dtype : LISA_DTYPE_F32, S));
    CUDA_LAUNCH_CHECK(c);
    return LISA_OK;
}
