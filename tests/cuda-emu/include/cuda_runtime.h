/* cuda_runtime.h (CUDA emulator): the subset of the CUDA runtime and of the
 * kernel language that kernels/cuda/ uses, implemented on the host so that
 * the CUDA backend compiles as C++ with the system compiler and runs every
 * kernel on the CPU (cuda-emu.cpp).
 *
 * What it is for: checking the CUDA backend's logic (indexing, reductions,
 * warp shuffles, barriers, launch configurations, host/device pointer use,
 * copies, cuBLASLt layouts and alignment) against the CPU oracle on machines
 * without a GPU. Each block runs its threads as fibers on one OS thread;
 * __syncthreads and the warp shuffles switch fibers, so the code runs with
 * CUDA's semantics where it is well defined and stops with a message where
 * it is not (a shuffle naming an exited lane, a barrier that cannot
 * complete, a kernel handed host memory).
 *
 * Deliberately not here: timing, memory-model effects (no data races are
 * detected: threads of a block interleave only at barriers and shuffles),
 * device-side math ulps (host libm), dynamic shared memory, streams running
 * concurrently (every call completes before it returns, so events are done
 * as soon as they are recorded). */
#ifndef CUEMU_CUDA_RUNTIME_H
#define CUEMU_CUDA_RUNTIME_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
/* Blocks run one at a time, so a function-static array is the block's
 * shared memory. */
#define __shared__ static
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
    unsigned x, y, z;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
    cudaErrorNotReady = 600,
    cudaErrorInvalidDevice = 101,
    cudaErrorLaunchFailure = 719,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00
#define cudaHostAllocPortable 0x01

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned flags);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s = 0);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
/* Streams complete every call before it returns, so a recorded event is
 * done at once: cudaEventQuery answers cudaSuccess, and cudaStreamWaitEvent
 * has nothing to wait for (both check that the event exists). */
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);

/* Graphs: between cudaStreamBeginCapture and cudaStreamEndCapture, kernel
 * launches, cuBLASLt matmuls and async copies/memsets are recorded (with
 * their arguments by value) instead of run; cudaGraphLaunch runs them in
 * order. A synchronize or a cudaMalloc while recording invalidates the
 * capture, as on a GPU. */
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t g,
                                 unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

template <class T> cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
template <class T> cudaError_t cudaMallocHost(T **p, size_t n) {
    return cudaMallocHost((void **)p, n);
}
template <class T> cudaError_t cudaHostAlloc(T **p, size_t n, unsigned flags) {
    return cudaHostAlloc((void **)p, n, flags);
}

/* device functions that the host C/C++ libraries lack */
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline float __fdividef(float a, float b) { return a / b; }

namespace cuemu {

extern uint3 *g_thread_idx; /* the running fiber's */
extern uint3 g_block_idx;
extern dim3 g_block_dim, g_grid_dim;

/* Where the running thread is in its warp. */
int lane_id(void);
/* Warp-collective exchange: every live lane of the caller's warp offers
 * `bits`; returns what lane `src` offered. `mask` must name every lane. */
uint64_t warp_exchange(unsigned mask, uint64_t bits, int src);
void warp_barrier(unsigned mask);
void block_barrier(void);

/* Runs grid x block threads of body(ctx); a bad configuration sets the
 * error that the next cudaGetLastError returns, as a real launch does. */
typedef void (*body_fn)(void *ctx);
void grid_run(const char *kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
              body_fn body, void *ctx);
/* Stops with a message when a kernel argument is a non-null pointer that
 * is not device memory from cudaMalloc. */
void arg_check(const char *kernel, int index, const void *p);
/* Whether [p, p + n) lies inside one cudaMalloc allocation. */
bool device_range(const void *p, size_t n);
/* Whether a stream capture is recording, and appending to it. */
bool capturing(void);
void capture_add(std::function<void()> node);

template <class T> T shfl(unsigned mask, T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    b = warp_exchange(mask, b, src);
    T r;
    memcpy(&r, &b, sizeof r);
    return r;
}

template <class... P> struct launcher {
    void (*kernel)(P...);
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    const char *name;

    template <class... A> void operator()(A... a) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel argument count");
        struct ctx_t {
            void (*k)(P...);
            std::tuple<P...> args;
        } ctx{kernel, std::tuple<P...>(a...)};
        int i = 0;
        std::apply([&](const auto &...x) { (check(i++, x), ...); }, ctx.args);
        body_fn body = [](void *c) {
            ctx_t *x = (ctx_t *)c;
            std::apply(x->k, x->args);
        };
        if (capturing()) {
            launcher self = *this;
            capture_add([self, ctx, body]() mutable {
                grid_run(self.name, self.grid, self.block, self.smem, self.stream, body, &ctx);
            });
            return;
        }
        grid_run(name, grid, block, smem, stream, body, &ctx);
    }
    template <class X> void check(int i, const X &x) const {
        if constexpr (std::is_pointer<X>::value) arg_check(name, i, (const void *)x);
    }
};

template <class... P>
launcher<P...> launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                      const char *name) {
    return launcher<P...>{k, grid, block, smem, s, name};
}

} // namespace cuemu

#define threadIdx (*cuemu::g_thread_idx)
#define blockIdx (cuemu::g_block_idx)
#define blockDim (cuemu::g_block_dim)
#define gridDim (cuemu::g_grid_dim)
#define warpSize 32

#define CUDA_KERNEL(kernel, grid, block, smem, stream)                                             \
    cuemu::launch(kernel, grid, block, smem, stream, #kernel)

static inline void __syncthreads(void) { cuemu::block_barrier(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { cuemu::warp_barrier(mask); }

template <class T> T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    int l = cuemu::lane_id();
    return cuemu::shfl(mask, v, (l & ~(width - 1)) + (src & (width - 1)));
}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    int l = cuemu::lane_id(), s = l ^ lane_mask;
    /* beyond the caller's group of `width` lanes: its own value */
    return cuemu::shfl(mask, v, (s & ~(width - 1)) > (l & ~(width - 1)) ? l : s);
}
template <class T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int l = cuemu::lane_id(), s = l + (int)delta;
    return cuemu::shfl(mask, v, (s & ~(width - 1)) != (l & ~(width - 1)) ? l : s);
}

#endif
