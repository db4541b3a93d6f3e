/* cuda-emu.cpp: the CUDA emulator's runtime (include/cuda_runtime.h): device
 * memory as tracked host allocations, synchronous streams and events, and a
 * kernel launcher that runs each block's threads as fibers.
 *
 * Scheduling: the blocks of a grid run one after another on the calling OS
 * thread. Within a block every thread is a fiber with its own stack; a
 * fiber runs until it finishes or reaches a barrier (__syncthreads, or one
 * of the two barriers inside a warp shuffle / __syncwarp), and once every
 * live thread of the block (or of the warp) waits there, they are released
 * together. Threads that have returned count as arrived at __syncthreads,
 * as on sm_70+. Odd-numbered blocks run their threads in reverse order, so
 * a missing barrier between one lane's write and another's read of shared
 * memory shows as a wrong result. A warp-collective call whose mask names an
 * exited or absent lane, or a barrier that can never complete, stops the
 * program with the kernel, block and lanes named.
 *
 * Memory: cudaMalloc hands out host memory, filled with 0xff (NaN in every
 * float type) so that reading what was never written shows, and records the
 * range; kernel pointer arguments, copies and cuBLASLt operands must lie in
 * such ranges (or, for the host side of a copy, outside them). The device
 * size is CUEMU_DEVICE_BYTES (default 80 GiB, an H100), the device count
 * CUEMU_DEVICES (default 1), so out-of-memory paths can be exercised;
 * CUEMU_CAPTURE_FAIL=1 makes every stream capture fail.
 *
 * Deliberately not here: concurrency between blocks, timing, texture or
 * dynamic shared memory, atomics, cooperative groups. */
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>
#include <sys/mman.h>

#include "cuda_runtime.h"

namespace cuemu {

uint3 *g_thread_idx;
uint3 g_block_idx;
dim3 g_block_dim, g_grid_dim;

/* ---- memory ------------------------------------------------------------ */

enum mem_kind { MEM_DEVICE, MEM_PINNED };
struct region {
    size_t size;
    mem_kind kind;
};
static std::map<uintptr_t, region> g_regions;
static size_t g_device_used;
static cudaError_t g_last_error = cudaSuccess;

static size_t device_bytes(void) {
    const char *e = getenv("CUEMU_DEVICE_BYTES");
    return e && *e ? (size_t)strtoull(e, NULL, 0) : (size_t)80 << 30;
}

/* The region holding [p, p + n), or NULL. */
static const region *region_find(const void *p, size_t n, uintptr_t *base) {
    uintptr_t a = (uintptr_t)p;
    auto it = g_regions.upper_bound(a);
    if (it == g_regions.begin()) return NULL;
    --it;
    if (a < it->first || a + n > it->first + it->second.size) return NULL;
    if (base) *base = it->first;
    return &it->second;
}

bool device_range(const void *p, size_t n) {
    const region *r = region_find(p, n, NULL);
    return r && r->kind == MEM_DEVICE;
}

static bool host_side(const void *p, size_t n) {
    const region *r = region_find(p, n ? n : 1, NULL);
    return !r || r->kind == MEM_PINNED;
}

void arg_check(const char *kernel, int index, const void *p) {
    if (!p || device_range(p, 1)) return;
    fprintf(stderr, "cuda-emu: kernel %s: argument %d (%p) is not device memory\n", kernel, index,
            p);
    abort();
}

/* ---- fibers ------------------------------------------------------------ */

enum fiber_state { F_RUN, F_WAIT_BLOCK, F_WAIT_WARP, F_DONE };
struct fiber {
    void *sp;
    uint3 idx;
    int state;
    unsigned mask; /* of the warp barrier it waits at */
};

#define CUEMU_MAX_THREADS 1024
#define CUEMU_STACK ((size_t)64 << 10)

static fiber g_fibers[CUEMU_MAX_THREADS];
static uint64_t g_slots[CUEMU_MAX_THREADS];
static char *g_stacks;
static int g_nthreads, g_cur;
static void *g_sched_sp;
static body_fn g_body;
static void *g_ctx;
static const char *g_kernel;

} // namespace cuemu

/* cuemu_switch(save, to): saves the callee-saved registers and the FP
 * control words on the current stack, stores the stack pointer in *save and
 * resumes the context whose stack pointer is `to`. */
extern "C" void cuemu_switch(void **save, void *to);
#if defined(__x86_64__)
__asm__(".pushsection .text\n"
        ".globl cuemu_switch\n"
        ".type cuemu_switch,@function\n"
        "cuemu_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size cuemu_switch, .-cuemu_switch\n"
        ".popsection\n"); /* what follows stays in the compiler's sections */
#else
#error "cuda-emu: fiber switch implemented for x86-64 only"
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUEMU_ASAN 1
#endif

namespace cuemu {

/* Under AddressSanitizer every switch is announced with the stack it goes
 * to, so that ASan checks kernels' accesses (device memory is heap memory,
 * shared memory is globals) without mistaking fiber stacks for overflows. */
#ifdef CUEMU_ASAN
static const void *g_sched_stack;
static size_t g_sched_stack_size;
#endif

/* scheduler -> fiber t */
static void switch_to_fiber(int t) {
#ifdef CUEMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, g_stacks + (size_t)t * CUEMU_STACK, CUEMU_STACK);
    cuemu_switch(&g_sched_sp, g_fibers[t].sp);
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
    cuemu_switch(&g_sched_sp, g_fibers[t].sp);
#endif
}

/* fiber -> scheduler; `last` when the fiber has finished for good */
static void switch_to_sched(fiber *f, bool last) {
#ifdef CUEMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(last ? NULL : &fake, g_sched_stack, g_sched_stack_size);
    cuemu_switch(&f->sp, g_sched_sp);
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
    (void)last;
    cuemu_switch(&f->sp, g_sched_sp);
#endif
}

[[noreturn]] static void fiber_entry(void) {
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, &g_sched_stack, &g_sched_stack_size);
#endif
    g_body(g_ctx);
    g_fibers[g_cur].state = F_DONE;
    switch_to_sched(&g_fibers[g_cur], true);
    abort(); /* a finished fiber is never resumed */
}

static void fiber_init(fiber *f, char *stack) {
#ifdef CUEMU_ASAN
    /* a fiber of an earlier block finished without unwinding: its frames'
     * redzones are still poisoned */
    __asan_unpoison_memory_region(stack, CUEMU_STACK);
#endif
    uintptr_t top = (uintptr_t)(stack + CUEMU_STACK) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top;
    *--sp = 0;                          /* entry then sees rsp = 8 (mod 16), as after a call */
    *--sp = (uint64_t)(uintptr_t)fiber_entry;
    for (int i = 0; i < 6; i++) *--sp = 0; /* rbp rbx r12..r15 */
    uint32_t mxcsr = 0;
    uint16_t fpucw = 0;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    *--sp = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
    f->sp = sp;
}

[[noreturn]] static void fail(const char *what) {
    fprintf(stderr, "cuda-emu: kernel %s, block (%u,%u,%u), thread (%u,%u,%u): %s\n", g_kernel,
            g_block_idx.x, g_block_idx.y, g_block_idx.z, g_thread_idx->x, g_thread_idx->y,
            g_thread_idx->z, what);
    abort();
}

static void yield(int state) {
    fiber *f = &g_fibers[g_cur];
    f->state = state;
    switch_to_sched(f, false);
}

int lane_id(void) { return g_cur & 31; }

void block_barrier(void) { yield(F_WAIT_BLOCK); }

void warp_barrier(unsigned mask) {
    g_fibers[g_cur].mask = mask;
    yield(F_WAIT_WARP);
}

uint64_t warp_exchange(unsigned mask, uint64_t bits, int src) {
    if (src < 0 || src > 31) fail("shuffle source lane out of range");
    g_slots[g_cur] = bits;
    warp_barrier(mask);
    int s = (g_cur & ~31) + src;
    if (!(mask >> src & 1u) || s >= g_nthreads || g_fibers[s].state == F_DONE)
        fail("shuffle reads a lane outside the mask or one that has exited");
    uint64_t r = g_slots[s];
    warp_barrier(mask);
    return r;
}

static void dump_states(void) {
    static const char *names[] = {"running", "at __syncthreads", "at a warp barrier", "exited"};
    for (int t = 0; t < g_nthreads; t++)
        fprintf(stderr, "  thread %d: %s\n", t, names[g_fibers[t].state]);
}

/* Releases the threads waiting at a barrier that has completed; false when
 * none has (a deadlock: some wait where others never arrive). */
static bool barriers_release(int live) {
    int at_block = 0;
    for (int t = 0; t < g_nthreads; t++) at_block += g_fibers[t].state == F_WAIT_BLOCK;
    if (at_block == live) {
        for (int t = 0; t < g_nthreads; t++)
            if (g_fibers[t].state == F_WAIT_BLOCK) g_fibers[t].state = F_RUN;
        return true;
    }
    bool released = false;
    for (int w = 0; w < g_nthreads; w += 32) {
        int n = g_nthreads - w < 32 ? g_nthreads - w : 32, alive = 0, waiting = 0;
        for (int t = w; t < w + n; t++) {
            alive += g_fibers[t].state != F_DONE;
            waiting += g_fibers[t].state == F_WAIT_WARP;
        }
        if (waiting == 0 || waiting != alive) continue;
        for (int t = w; t < w + n; t++) {
            if (g_fibers[t].state != F_WAIT_WARP) continue;
            unsigned m = g_fibers[t].mask;
            for (int l = 0; l < 32; l++) {
                if (!(m >> l & 1u)) continue;
                if (w + l >= g_nthreads || g_fibers[w + l].state != F_WAIT_WARP) {
                    g_cur = t;
                    g_thread_idx = &g_fibers[t].idx;
                    fail("warp-collective call whose mask names a lane that has exited or "
                         "does not exist");
                }
                if (g_fibers[w + l].mask != m) {
                    g_cur = t;
                    g_thread_idx = &g_fibers[t].idx;
                    fail("lanes of one warp-collective call pass different masks");
                }
            }
        }
        for (int t = w; t < w + n; t++)
            if (g_fibers[t].state == F_WAIT_WARP) g_fibers[t].state = F_RUN;
        released = true;
    }
    return released;
}

static void block_run(void) {
    for (int t = 0; t < g_nthreads; t++) {
        fiber *f = &g_fibers[t];
        f->idx.x = (unsigned)t % g_block_dim.x;
        f->idx.y = (unsigned)t / g_block_dim.x % g_block_dim.y;
        f->idx.z = (unsigned)t / (g_block_dim.x * g_block_dim.y);
        f->state = F_RUN;
        f->mask = 0;
        fiber_init(f, g_stacks + (size_t)t * CUEMU_STACK);
    }
    int live = g_nthreads;
    /* odd blocks run their threads last to first: a lane reading what
     * another wrote without a barrier in between sees stale data in one of
     * the two orders, whichever lane is the writer */
    int reverse = (g_block_idx.x + g_block_idx.y + g_block_idx.z) & 1;
    for (;;) {
        for (int i = 0; i < g_nthreads; i++) {
            int t = reverse ? g_nthreads - 1 - i : i;
            if (g_fibers[t].state != F_RUN) continue;
            g_cur = t;
            g_thread_idx = &g_fibers[t].idx;
            switch_to_fiber(t);
            if (g_fibers[t].state == F_DONE) live--;
        }
        if (live == 0) return;
        if (!barriers_release(live)) {
            fprintf(stderr, "cuda-emu: kernel %s, block (%u,%u,%u): deadlock at a barrier\n",
                    g_kernel, g_block_idx.x, g_block_idx.y, g_block_idx.z);
            dump_states();
            abort();
        }
    }
}

void grid_run(const char *kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
              body_fn body, void *ctx) {
    (void)s;
    uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (threads == 0 || threads > CUEMU_MAX_THREADS || block.z > 64 || grid.x == 0 ||
        grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 ||
        smem > 48 * 1024) {
        g_last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (!g_stacks) {
        void *m = mmap(NULL, CUEMU_MAX_THREADS * CUEMU_STACK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            g_last_error = cudaErrorMemoryAllocation;
            return;
        }
        g_stacks = (char *)m;
    }
    g_kernel = kernel;
    g_body = body;
    g_ctx = ctx;
    g_grid_dim = grid;
    g_block_dim = block;
    g_nthreads = (int)threads;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                g_block_idx.x = x;
                g_block_idx.y = y;
                g_block_idx.z = z;
                block_run();
            }
}

} // namespace cuemu

using namespace cuemu;

/* ---- runtime API --------------------------------------------------------- */

static int device_count(void) {
    const char *e = getenv("CUEMU_DEVICES");
    return e && *e ? atoi(e) : 1;
}

cudaError_t cudaGetDeviceCount(int *count) {
    *count = device_count();
    return *count > 0 ? cudaSuccess : cudaErrorNoDevice;
}

static int g_device;

cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= device_count()) return cudaErrorInvalidDevice;
    g_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    *device = g_device;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return g_last_error; }

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    }
    return "unknown error";
}

static cudaError_t region_alloc(void **p, size_t n, mem_kind kind) {
    if (kind == MEM_DEVICE && n > device_bytes() - g_device_used) {
        *p = NULL;
        return cudaErrorMemoryAllocation;
    }
    /* cudaMalloc's 256-byte alignment, which kernels and cuBLASLt rely on */
    void *m = aligned_alloc(256, (n + 255) / 256 * 256 + (n == 0) * 256);
    if (!m) return cudaErrorMemoryAllocation;
    memset(m, 0xff, n);
    g_regions[(uintptr_t)m] = region{n ? n : 1, kind};
    if (kind == MEM_DEVICE) g_device_used += n;
    *p = m;
    return cudaSuccess;
}

static cudaError_t region_free(void *p, mem_kind kind) {
    if (!p) return cudaSuccess;
    auto it = g_regions.find((uintptr_t)p);
    if (it == g_regions.end() || it->second.kind != kind) {
        fprintf(stderr, "cuda-emu: %s(%p): not an allocation of that kind\n",
                kind == MEM_DEVICE ? "cudaFree" : "cudaFreeHost", p);
        return cudaErrorInvalidValue;
    }
    if (kind == MEM_DEVICE) g_device_used -= it->second.size;
    g_regions.erase(it);
    free(p);
    return cudaSuccess;
}

/* ---- graphs -------------------------------------------------------------- */

struct CUgraph_st {
    std::vector<std::function<void()>> nodes;
};
struct CUgraphExec_st {
    std::vector<std::function<void()>> nodes;
};

static CUgraph_st *g_capture;         /* recording into, or NULL */
static bool g_capture_invalid;

bool cuemu::capturing(void) { return g_capture != NULL; }
void cuemu::capture_add(std::function<void()> node) { g_capture->nodes.push_back(std::move(node)); }

/* A call that a capture does not allow: invalidates it. */
static cudaError_t capture_forbid(const char *what) {
    fprintf(stderr, "cuda-emu: %s while a stream capture is recording\n", what);
    g_capture_invalid = true;
    return cudaErrorStreamCaptureUnsupported;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
    if (g_capture) return capture_forbid("cudaStreamBeginCapture");
    g_capture = new CUgraph_st;
    g_capture_invalid = false;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
    CUgraph_st *c = g_capture;
    g_capture = NULL;
    *g = NULL;
    if (!c) return cudaErrorInvalidValue;
    /* CUEMU_CAPTURE_FAIL=1: every capture comes back invalidated, as from a
     * driver that refuses one, so callers' fallbacks can be tested */
    const char *fail = getenv("CUEMU_CAPTURE_FAIL");
    if (g_capture_invalid || (fail && !strcmp(fail, "1"))) {
        delete c;
        return cudaErrorStreamCaptureInvalidated;
    }
    *g = c;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t g, unsigned long long) {
    *exec = new CUgraphExec_st{g->nodes};
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t) {
    if (g_capture) return capture_forbid("cudaGraphLaunch");
    for (auto &n : exec->nodes) n();
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete exec;
    return cudaSuccess;
}

/* ---- memory API ------------------------------------------------------------ */

cudaError_t cudaMalloc(void **p, size_t n) {
    if (g_capture) return capture_forbid("cudaMalloc");
    return region_alloc(p, n, MEM_DEVICE);
}
cudaError_t cudaFree(void *p) { return region_free(p, MEM_DEVICE); }
cudaError_t cudaMallocHost(void **p, size_t n) { return region_alloc(p, n, MEM_PINNED); }
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned flags) {
    if (flags & ~(unsigned)cudaHostAllocPortable) return cudaErrorInvalidValue;
    return region_alloc(p, n, MEM_PINNED);
}
cudaError_t cudaFreeHost(void *p) { return region_free(p, MEM_PINNED); }

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *total_b = device_bytes();
    *free_b = *total_b - g_device_used;
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    if (n == 0) return cudaSuccess;
    bool ok;
    switch (kind) {
    case cudaMemcpyHostToDevice: ok = device_range(dst, n) && host_side(src, n); break;
    case cudaMemcpyDeviceToHost: ok = host_side(dst, n) && device_range(src, n); break;
    case cudaMemcpyDeviceToDevice: ok = device_range(dst, n) && device_range(src, n); break;
    case cudaMemcpyHostToHost: ok = host_side(dst, n) && host_side(src, n); break;
    default: ok = (device_range(dst, n) || host_side(dst, n)) && (device_range(src, n) || host_side(src, n)); break;
    }
    if (!ok) {
        fprintf(stderr, "cuda-emu: cudaMemcpy(%p, %p, %zu, kind %d): a range is outside "
                        "device memory or on the wrong side\n", dst, src, n, (int)kind);
        return cudaErrorInvalidValue;
    }
    memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t) {
    if (g_capture) {
        capture_add([=]() { cudaMemcpy(dst, src, n, kind); });
        return cudaSuccess;
    }
    return cudaMemcpy(dst, src, n, kind);
}

cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (n == 0) return cudaSuccess;
    if (!device_range(p, n)) {
        fprintf(stderr, "cuda-emu: cudaMemset(%p, %zu): outside device memory\n", p, n);
        return cudaErrorInvalidValue;
    }
    memset(p, v, n);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
    if (g_capture) {
        capture_add([=]() { cudaMemset(p, v, n); });
        return cudaSuccess;
    }
    return cudaMemset(p, v, n);
}

struct CUstream_st {
    unsigned flags;
};
struct CUevent_st {
    unsigned flags;
    unsigned magic; /* CUEMU_EVENT_MAGIC while the event exists */
};
#define CUEMU_EVENT_MAGIC 0x45564e54u

/* A handle that is not a live event: what a GPU reports as invalid. */
static bool event_bad(cudaEvent_t e, const char *what) {
    if (e && e->magic == CUEMU_EVENT_MAGIC) return false;
    fprintf(stderr, "cuda-emu: %s(%p): not a live event\n", what, (void *)e);
    return true;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    *s = new CUstream_st{flags};
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
    return g_capture ? capture_forbid("cudaStreamSynchronize") : cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    return g_capture ? capture_forbid("cudaDeviceSynchronize") : cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    *e = new CUevent_st{flags, CUEMU_EVENT_MAGIC};
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    if (event_bad(e, "cudaEventDestroy")) return cudaErrorInvalidValue;
    e->magic = 0;
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    return event_bad(e, "cudaEventRecord") ? cudaErrorInvalidValue : cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (event_bad(e, "cudaEventSynchronize")) return cudaErrorInvalidValue;
    return g_capture ? capture_forbid("cudaEventSynchronize") : cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
    return event_bad(e, "cudaEventQuery") ? cudaErrorInvalidValue : cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned flags) {
    if (event_bad(e, "cudaStreamWaitEvent") || flags) return cudaErrorInvalidValue;
    return cudaSuccess;
}
