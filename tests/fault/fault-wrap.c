/* fault-wrap.c: the allocation and file I/O injection points of fault.h,
 * as link-time wrappers. Under -DLISA_FAULT_INJECTION=ON tests/fault/
 * fault.cmake adds this file to lisa_kernels and links every program with
 * -Wl,--wrap=SYM for each SYM below, so every call our own code makes
 * (library, CLI and tests) goes through __wrap_SYM; calls made inside
 * shared libraries (libc itself, cJSON, libpng, hiredis, protobuf-c) do
 * not. __real_SYM is the libc symbol, or the sanitizer's interceptor of
 * it in the ASan build, so leak checking sees every block.
 *
 * Each wrapper fails the way the real call fails: NULL with ENOMEM, -1
 * with EIO, a short count with EIO, MAP_FAILED. The standard streams and
 * descriptors 0..2 are never failed (diagnostics are not file I/O).
 *
 * Deliberately not here: the counting (kernels/fault.c), free and close
 * (releasing never fails). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include "fault.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
FILE *__real_fopen(const char *path, const char *mode);
FILE *__real_fopen64(const char *path, const char *mode);
ssize_t __real_getline(char **line, size_t *cap, FILE *f);
size_t __real_fread(void *p, size_t sz, size_t n, FILE *f);
size_t __real_fwrite(const void *p, size_t sz, size_t n, FILE *f);
char *__real_fgets(char *s, int n, FILE *f);
int __real_open(const char *path, int flags, ...);
ssize_t __real_read(int fd, void *p, size_t n);
ssize_t __real_write(int fd, const void *p, size_t n);
void *__real_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);
FILE *__wrap_fopen(const char *path, const char *mode);
FILE *__wrap_fopen64(const char *path, const char *mode);
ssize_t __wrap_getline(char **line, size_t *cap, FILE *f);
size_t __wrap_fread(void *p, size_t sz, size_t n, FILE *f);
size_t __wrap_fwrite(const void *p, size_t sz, size_t n, FILE *f);
char *__wrap_fgets(char *s, int n, FILE *f);
int __wrap_open(const char *path, int flags, ...);
ssize_t __wrap_read(int fd, void *p, size_t n);
ssize_t __wrap_write(int fd, const void *p, size_t n);
void *__wrap_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off);

static int alloc_fails(void) {
    if (!lisa_fault_hit(LISA_FAULT_ALLOC)) return 0;
    errno = ENOMEM;
    return 1;
}

static int io_fails(void) {
    if (!lisa_fault_hit(LISA_FAULT_IO)) return 0;
    errno = EIO;
    return 1;
}

static int std_stream(FILE *f) { return f == stdin || f == stdout || f == stderr; }

/* A failed stdio call leaves the stream's error indicator set, as a real
 * EIO does, so callers that tell EOF from an error with ferror() see it.
 * (glibc's flag: test builds are glibc builds.) */
static void stream_error(FILE *f) { f->_flags |= 0x20; /* _IO_ERR_SEEN */ }

void *__wrap_malloc(size_t n) { return alloc_fails() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t k, size_t n) { return alloc_fails() ? NULL : __real_calloc(k, n); }
/* a failed realloc leaves p allocated, as the real one does */
void *__wrap_realloc(void *p, size_t n) { return alloc_fails() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return alloc_fails() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return alloc_fails() ? NULL : __real_strndup(s, n); }
void *__wrap_aligned_alloc(size_t a, size_t n) {
    return alloc_fails() ? NULL : __real_aligned_alloc(a, n);
}

FILE *__wrap_fopen(const char *path, const char *mode) {
    return io_fails() ? NULL : __real_fopen(path, mode);
}

/* (sources that include libpng's or libjpeg's headers call fopen64) */
FILE *__wrap_fopen64(const char *path, const char *mode) {
    return io_fails() ? NULL : __real_fopen64(path, mode);
}

/* getline allocates its line; on a file it counts as a read */
ssize_t __wrap_getline(char **line, size_t *cap, FILE *f) {
    if (std_stream(f) || !io_fails()) return __real_getline(line, cap, f);
    stream_error(f);
    return -1;
}

size_t __wrap_fread(void *p, size_t sz, size_t n, FILE *f) {
    if (std_stream(f) || !io_fails()) return __real_fread(p, sz, n, f);
    stream_error(f);
    return 0;
}

size_t __wrap_fwrite(const void *p, size_t sz, size_t n, FILE *f) {
    if (std_stream(f) || !io_fails()) return __real_fwrite(p, sz, n, f);
    stream_error(f);
    return 0;
}

char *__wrap_fgets(char *s, int n, FILE *f) {
    if (std_stream(f) || !io_fails()) return __real_fgets(s, n, f);
    stream_error(f);
    return NULL;
}

int __wrap_open(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    return io_fails() ? -1 : __real_open(path, flags, mode);
}

ssize_t __wrap_read(int fd, void *p, size_t n) {
    return fd > 2 && io_fails() ? -1 : __real_read(fd, p, n);
}

ssize_t __wrap_write(int fd, const void *p, size_t n) {
    return fd > 2 && io_fails() ? -1 : __real_write(fd, p, n);
}

void *__wrap_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off) {
    /* anonymous maps are memory, not file I/O */
    if (!(flags & MAP_ANONYMOUS) && io_fails()) return MAP_FAILED;
    return __real_mmap(a, n, prot, flags, fd, off);
}
