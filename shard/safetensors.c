/* safetensors.c: opens HF safetensors checkpoints (see safetensors.h).
 *
 * Each file is mmap'd read-only; its JSON header is parsed with cJSON and
 * every entry is checked (dtype, shape, offsets, byte count against
 * shape * dtype size, offsets against the data section) before any pointer
 * into the mapping is stored. A sharded checkpoint is opened through its
 * model.safetensors.index.json: every distinct shard in "weight_map" is
 * mapped, and each tensor the map names must be present in the shard it
 * names. Tensor names must be unique across the whole checkpoint.
 *
 * Tensors are kept in one array sorted by name, so lisa_safetensors_find is
 * a binary search and lisa_safetensors_at(i) enumerates in name order.
 *
 * Deliberately not here: dtype conversion, copies of tensor data, device
 * upload, checks of data alignment (the HF writer pads the header to 8
 * bytes; element alignment beyond that is the file's business), checks that
 * tensors do not overlap in the data section, and "__metadata__" contents
 * (accepted when it is an object, otherwise ignored). */
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header larger than this is treated as hostile rather than parsed. */
#define ST_HEADER_MAX ((uint64_t)100 * 1024 * 1024)
/* An index json larger than this is rejected. */
#define ST_INDEX_MAX ((size_t)64 * 1024 * 1024)
/* Largest integer a JSON number (double) represents exactly. */
#define ST_JSON_INT_MAX 9007199254740992.0

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

typedef struct st_file {
    char *path;
    int fd;
    void *map;
    size_t size;
    bool borrowed;           /* map is the caller's memory: never unmapped */
} st_file;

struct lisa_safetensors {
    char *path;              /* as given to open, for messages */
    st_file *files;
    int nfiles;
    lisa_st_tensor *tensors; /* sorted by name once loaded */
    size_t count;
    size_t cap;
};

/* ---- small helpers ---- */

/* strdup that reports LISA_ERR_NOMEM; *out is NULL on failure. */
static lisa_status st_str_dup(char **out, const char *s) {
    size_t n = strlen(s) + 1;
    *out = malloc(n);
    if (!*out) return lisa_error_set(LISA_ERR_NOMEM, "out of memory copying '%.64s'", s);
    memcpy(*out, s, n);
    return LISA_OK;
}

/* Joins dir and name with one '/' into a fresh string. */
static lisa_status st_path_join(char **out, const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    *out = malloc(a + b + 2);
    if (!*out) return lisa_error_set(LISA_ERR_NOMEM, "out of memory joining paths");
    memcpy(*out, dir, a);
    size_t k = a;
    if (a == 0 || dir[a - 1] != '/') (*out)[k++] = '/';
    memcpy(*out + k, name, b + 1);
    return LISA_OK;
}

/* The directory part of path ("." when it has none), as a fresh string. */
static lisa_status st_path_dir(char **out, const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return st_str_dup(out, ".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    *out = malloc(n + 1);
    if (!*out) return lisa_error_set(LISA_ERR_NOMEM, "out of memory");
    memcpy(*out, path, n);
    (*out)[n] = 0;
    return LISA_OK;
}

static bool st_path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool st_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Formats shape[0..ndim) as "[a, b]" into buf (always NUL-terminated). */
static void st_shape_format(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* Maps a safetensors dtype string to a lisa_dtype; false when unsupported. */
static bool st_dtype_parse(const char *s, lisa_dtype *out) {
    if (strcmp(s, "F32") == 0) { *out = LISA_DTYPE_F32; return true; }
    if (strcmp(s, "F16") == 0) { *out = LISA_DTYPE_F16; return true; }
    if (strcmp(s, "BF16") == 0) { *out = LISA_DTYPE_BF16; return true; }
    return false;
}

/* True when item is a JSON number holding a non-negative integer exactly
 * representable in a double; stores it in *out. */
static bool st_json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!(v >= 0.0) || v > ST_JSON_INT_MAX || v != (double)(uint64_t)v) return false;
    *out = (uint64_t)v;
    return true;
}

/* ---- files ---- */

/* Appends an empty entry (nothing mapped) named path to st->files. */
static lisa_status st_file_push(lisa_safetensors *st, const char *path, int *index) {
    st_file *grown = realloc(st->files, sizeof *grown * (size_t)(st->nfiles + 1));
    if (!grown) return lisa_error_set(LISA_ERR_NOMEM, "out of memory opening %s", path);
    st->files = grown;
    st_file *f = &st->files[st->nfiles];
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->map = MAP_FAILED;
    st->nfiles++;
    *index = st->nfiles - 1;
    return st_str_dup(&f->path, path);
}

/* Maps path read-only into a new entry of st->files. */
static lisa_status st_file_map(lisa_safetensors *st, const char *path, int *index) {
    LISA_TRY(st_file_push(st, path, index));
    st_file *f = &st->files[*index];

    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return lisa_error_set(LISA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f->fd, &sb) != 0)
        return lisa_error_set(LISA_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return lisa_error_set(LISA_ERR_IO, "%s: not a regular file", path);
    if (sb.st_size < 8)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "%s: file is %lld bytes, shorter than the 8-byte header length",
                              path, (long long)sb.st_size);
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: file too large to map", path);
    f->size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
    if (f->map == MAP_FAILED)
        return lisa_error_set(LISA_ERR_IO, "cannot mmap %s: %s", path, strerror(errno));
    return LISA_OK;
}

static void st_file_unmap(st_file *f) {
    if (f->map != MAP_FAILED && !f->borrowed) munmap(f->map, f->size);
    if (f->fd >= 0) close(f->fd);
    free(f->path);
}

/* ---- header parsing ---- */

/* Appends a zeroed tensor slot and returns it. */
static lisa_status st_tensor_push(lisa_safetensors *st, lisa_st_tensor **out) {
    if (st->count == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        lisa_st_tensor *grown = realloc(st->tensors, sizeof *grown * cap);
        if (!grown) return lisa_error_set(LISA_ERR_NOMEM, "out of memory for tensor table");
        st->tensors = grown;
        st->cap = cap;
    }
    *out = &st->tensors[st->count];
    memset(*out, 0, sizeof **out);
    return LISA_OK;
}

/* Validates one header entry of file fi and appends it to the table. The
 * data section starts at `data` and is `data_size` bytes long. */
static lisa_status st_entry_parse(lisa_safetensors *st, int fi, const cJSON *entry,
                                  const cJSON *meta, const uint8_t *data, uint64_t data_size) {
    const char *path = st->files[fi].path;
    const char *name = entry->string;
    if (!cJSON_IsObject(entry))
        return lisa_error_set(LISA_ERR_FORMAT, "tensor '%s' in %s: entry is not an object",
                              name, path);

    const cJSON *jdtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(jdtype))
        return lisa_error_set(LISA_ERR_FORMAT, "tensor '%s' in %s: missing or non-string dtype",
                              name, path);
    lisa_dtype dtype = LISA_DTYPE_F32;
    /* A block-quantized weight is stored as U8 (N, K/32, block bytes) and
     * named in __metadata__ as "lisa.quant.<name>": "q8_0" | "q4_0"; it is
     * handed out as Q8_0 / Q4_0 of shape (N, K). */
    int quant = 0;
    if (meta) {
        char key[320];
        snprintf(key, sizeof key, "lisa.quant.%s", name);
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(meta, key);
        if (q && strcmp(jdtype->valuestring, "U8") != 0)
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "tensor '%s' in %s: __metadata__ '%s' names it quantized but its "
                                  "dtype is %s, not U8",
                                  name, path, key, jdtype->valuestring);
        if (q) {
            if (!cJSON_IsString(q) ||
                (strcmp(q->valuestring, "q8_0") != 0 && strcmp(q->valuestring, "q4_0") != 0))
                return lisa_error_set(LISA_ERR_FORMAT,
                                      "tensor '%s' in %s: __metadata__ '%s' must be \"q8_0\" or "
                                      "\"q4_0\"",
                                      name, path, key);
            dtype = strcmp(q->valuestring, "q8_0") == 0 ? LISA_DTYPE_Q8_0 : LISA_DTYPE_Q4_0;
            quant = 1;
        }
    }
    if (!quant && !st_dtype_parse(jdtype->valuestring, &dtype))
        return lisa_error_set(LISA_ERR_FORMAT, "tensor '%s' in %s: unsupported dtype '%s'",
                              name, path, jdtype->valuestring);

    const cJSON *jshape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!cJSON_IsArray(jshape))
        return lisa_error_set(LISA_ERR_FORMAT, "tensor '%s' in %s: missing or non-array shape",
                              name, path);
    int ndim = cJSON_GetArraySize(jshape);
    if (ndim > LISA_MAX_DIMS)
        return lisa_error_set(LISA_ERR_FORMAT, "tensor '%s' in %s: shape has %d dims (max %d)",
                              name, path, ndim, LISA_MAX_DIMS);
    int64_t shape[LISA_MAX_DIMS] = {0};
    uint64_t nelem = 1;
    bool overflow = false;
    int d = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, jshape) {
        uint64_t v = 0;
        if (!st_json_uint(dim, &v) || v > (uint64_t)INT64_MAX)
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "tensor '%s' in %s: shape[%d] is not a non-negative integer",
                                  name, path, d);
        shape[d++] = (int64_t)v;
        if (v != 0 && nelem > UINT64_MAX / v) overflow = true;
        else nelem *= v;
    }
    if (quant) {
        if (ndim != 3 || (uint64_t)shape[2] != lisa_dtype_size(dtype) ||
            shape[1] > INT64_MAX / LISA_QK) {
            char sbuf[128];
            st_shape_format(sbuf, sizeof sbuf, ndim, shape);
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "tensor '%s' in %s: a %s tensor is stored as U8 [rows, blocks, "
                                  "%zu], found %s",
                                  name, path, lisa_dtype_name(dtype), lisa_dtype_size(dtype), sbuf);
        }
        /* bytes = rows * blocks * block bytes = nelem of the U8 shape */
        shape[1] *= LISA_QK;
        shape[2] = 0;
        ndim = 2;
    }
    uint64_t esize = quant ? 1 : lisa_dtype_size(dtype);
    if (overflow || nelem > UINT64_MAX / esize) {
        char sbuf[128];
        st_shape_format(sbuf, sizeof sbuf, ndim, shape);
        return lisa_error_set(LISA_ERR_FORMAT, "tensor '%s' in %s: shape %s overflows a size",
                              name, path, sbuf);
    }
    uint64_t want = nelem * esize;

    const cJSON *joff = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    uint64_t begin = 0, end = 0;
    if (!cJSON_IsArray(joff) || cJSON_GetArraySize(joff) != 2 ||
        !st_json_uint(cJSON_GetArrayItem(joff, 0), &begin) ||
        !st_json_uint(cJSON_GetArrayItem(joff, 1), &end))
        return lisa_error_set(LISA_ERR_FORMAT,
                              "tensor '%s' in %s: data_offsets is not two non-negative integers",
                              name, path);
    if (begin > end)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "tensor '%s' in %s: data_offsets [%llu, %llu] has begin > end",
                              name, path, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "tensor '%s' in %s: data_offsets [%llu, %llu] beyond the data "
                              "section (%llu bytes)",
                              name, path, (unsigned long long)begin, (unsigned long long)end,
                              (unsigned long long)data_size);
    if (end - begin != want) {
        char sbuf[128];
        st_shape_format(sbuf, sizeof sbuf, ndim, shape);
        return lisa_error_set(LISA_ERR_FORMAT,
                              "tensor '%s' in %s: data_offsets [%llu, %llu] span %llu bytes but "
                              "shape %s of %s needs %llu",
                              name, path, (unsigned long long)begin, (unsigned long long)end,
                              (unsigned long long)(end - begin), sbuf, lisa_dtype_name(dtype),
                              (unsigned long long)want);
    }

    lisa_st_tensor *t = NULL;
    LISA_TRY(st_tensor_push(st, &t));
    char *copy = NULL;
    LISA_TRY(st_str_dup(&copy, name));
    t->name = copy;
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof shape);
    t->data = data + begin;
    t->nbytes = (size_t)want;
    t->file_index = fi;
    st->count++;
    return LISA_OK;
}

/* Parses the header of the (mapped) file fi and appends all its tensors. */
static lisa_status st_header_parse(lisa_safetensors *st, int fi) {
    const st_file *f = &st->files[fi];
    const char *path = f->path;
    if (f->size < 8)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "%s: file is %zu bytes, shorter than the 8-byte header length",
                              path, f->size);
    const uint8_t *base = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i];
    if (hlen > ST_HEADER_MAX)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: header length %llu is absurd (max %llu)",
                              path, (unsigned long long)hlen, (unsigned long long)ST_HEADER_MAX);
    if (hlen > (uint64_t)f->size - 8)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "%s: header length %llu beyond the file size (%zu bytes)", path,
                              (unsigned long long)hlen, f->size);

    const char *htext = (const char *)base + 8, *hend = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(htext, (size_t)hlen, &hend, 0);
    if (!root)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: header is not valid JSON", path);
    /* Only whitespace padding may follow the JSON value. */
    for (const char *c = hend; c < htext + hlen; c++) {
        if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r') {
            cJSON_Delete(root);
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "%s: header is not valid JSON (trailing bytes at offset %zu)",
                                  path, (size_t)(c - htext));
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lisa_error_set(LISA_ERR_FORMAT, "%s: header is not a JSON object", path);
    }
    const uint8_t *data = base + 8 + hlen;
    uint64_t data_size = (uint64_t)f->size - 8 - hlen;
    lisa_status s = LISA_OK;
    const cJSON *entry;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (meta && !cJSON_IsObject(meta)) meta = NULL;
    cJSON_ArrayForEach(entry, root) {
        if (entry->string && strcmp(entry->string, "__metadata__") == 0) continue;
        s = st_entry_parse(st, fi, entry, meta, data, data_size);
        if (s != LISA_OK) break;
    }
    cJSON_Delete(root);
    return s;
}

/* Maps one .safetensors file and appends all its tensors. *fi receives its
 * file index. */
static lisa_status st_file_load(lisa_safetensors *st, const char *path, int *fi) {
    LISA_TRY(st_file_map(st, path, fi));
    return st_header_parse(st, *fi);
}

/* ---- table ---- */

static int st_tensor_cmp(const void *a, const void *b) {
    const lisa_st_tensor *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return (x->file_index > y->file_index) - (x->file_index < y->file_index);
}

static int st_key_cmp(const void *key, const void *elem) {
    return strcmp(key, ((const lisa_st_tensor *)elem)->name);
}

/* Sorts the table and rejects duplicate names. */
static lisa_status st_table_finish(lisa_safetensors *st) {
    if (st->count > 1) qsort(st->tensors, st->count, sizeof *st->tensors, st_tensor_cmp);
    for (size_t i = 1; i < st->count; i++) {
        const lisa_st_tensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
        if (strcmp(a->name, b->name) == 0)
            return lisa_error_set(LISA_ERR_FORMAT, "tensor '%s' appears twice: in %s and in %s",
                                  a->name, st->files[a->file_index].path,
                                  st->files[b->file_index].path);
    }
    return LISA_OK;
}

/* ---- index ---- */

/* Reads a whole (small) file into a malloc'd buffer. */
static lisa_status st_file_slurp(const char *path, char **out, size_t *len) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lisa_error_set(LISA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lisa_error_set(LISA_ERR_IO, "%s: not a readable regular file", path);
    }
    if ((uint64_t)sb.st_size > ST_INDEX_MAX) {
        close(fd);
        return lisa_error_set(LISA_ERR_FORMAT, "%s: %lld bytes is too large for an index", path,
                              (long long)sb.st_size);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory reading %s", path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(buf);
        return lisa_error_set(LISA_ERR_IO, "short read on %s", path);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return LISA_OK;
}

/* A shard name must be a plain file name: no directories, no "..". */
static bool st_shard_name_ok(const char *s) {
    return s[0] != 0 && strchr(s, '/') == NULL && strchr(s, '\\') == NULL &&
           strstr(s, "..") == NULL && strcmp(s, ".") != 0;
}

/* Opens every shard named by weight_map in root (already an object), then
 * checks each mapped tensor lives in the shard the map names. */
static lisa_status st_index_load_json(lisa_safetensors *st, const char *index_path,
                                      const cJSON *root) {
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm))
        return lisa_error_set(LISA_ERR_FORMAT, "%s: missing or non-object \"weight_map\"",
                              index_path);
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e))
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "%s: weight_map entry '%s' is not a file name string",
                                  index_path, e->string);
        if (!st_shard_name_ok(e->valuestring))
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "%s: weight_map entry '%s' names shard '%s', which is not a "
                                  "plain file name",
                                  index_path, e->string, e->valuestring);
    }

    char *dir = NULL;
    LISA_TRY(st_path_dir(&dir, index_path));
    lisa_status s = LISA_OK;
    /* Distinct shards in order of first appearance: file index i belongs to
     * the i-th distinct name, so a shard's name is basename(files[i].path). */
    cJSON_ArrayForEach(e, wm) {
        bool seen = false;
        for (int i = 0; i < st->nfiles && !seen; i++) {
            const char *base = strrchr(st->files[i].path, '/');
            seen = strcmp(base ? base + 1 : st->files[i].path, e->valuestring) == 0;
        }
        if (seen) continue;
        char *shard = NULL;
        s = st_path_join(&shard, dir, e->valuestring);
        if (s != LISA_OK) break;
        int fi = -1;
        s = st_file_load(st, shard, &fi);
        free(shard);
        if (s != LISA_OK) break;
    }
    free(dir);
    if (s != LISA_OK) return s;

    LISA_TRY(st_table_finish(st));
    cJSON_ArrayForEach(e, wm) {
        const lisa_st_tensor *t = lisa_safetensors_find(st, e->string);
        const char *base = NULL;
        if (t) {
            const char *p = st->files[t->file_index].path;
            base = strrchr(p, '/');
            base = base ? base + 1 : p;
        }
        if (!t || strcmp(base, e->valuestring) != 0)
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "%s: tensor '%s' is mapped to shard '%s' but is not in it",
                                  index_path, e->string, e->valuestring);
    }
    return LISA_OK;
}

/* Parses the text of an index json found at index_path and loads its
 * shards. */
static lisa_status st_index_parse(lisa_safetensors *st, const char *index_path, const char *text,
                                  size_t len) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return lisa_error_set(LISA_ERR_FORMAT, "%s: not valid JSON", index_path);
    lisa_status s;
    if (!cJSON_IsObject(root))
        s = lisa_error_set(LISA_ERR_FORMAT, "%s: not a JSON object", index_path);
    else
        s = st_index_load_json(st, index_path, root);
    cJSON_Delete(root);
    return s;
}

/* Reads an index json and loads its shards. */
static lisa_status st_index_load(lisa_safetensors *st, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    LISA_TRY(st_file_slurp(index_path, &text, &len));
    lisa_status s = st_index_parse(st, index_path, text, len);
    free(text);
    return s;
}

/* ---- public API ---- */

static lisa_status st_open_any(lisa_safetensors *st, const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return lisa_error_set(LISA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        char *p = NULL;
        LISA_TRY(st_path_join(&p, path, ST_INDEX_NAME));
        if (st_path_exists(p)) {
            lisa_status s = st_index_load(st, p);
            free(p);
            return s;
        }
        free(p);
        LISA_TRY(st_path_join(&p, path, ST_SINGLE_NAME));
        if (st_path_exists(p)) {
            int fi = -1;
            lisa_status s = st_file_load(st, p, &fi);
            free(p);
            if (s != LISA_OK) return s;
            return st_table_finish(st);
        }
        free(p);
        return lisa_error_set(LISA_ERR_IO, "%s: no %s or %s in this directory", path,
                              ST_INDEX_NAME, ST_SINGLE_NAME);
    }
    if (st_ends_with(path, ".json")) return st_index_load(st, path);
    int fi = -1;
    LISA_TRY(st_file_load(st, path, &fi));
    return st_table_finish(st);
}

lisa_status lisa_safetensors_open(lisa_safetensors **out, const char *path) {
    *out = NULL;
    lisa_safetensors *st = calloc(1, sizeof *st);
    if (!st) return lisa_error_set(LISA_ERR_NOMEM, "out of memory opening %s", path);
    lisa_status s = st_str_dup(&st->path, path);
    if (s == LISA_OK) s = st_open_any(st, path);
    if (s != LISA_OK) {
        lisa_safetensors_close(st);
        return s;
    }
    *out = st;
    return LISA_OK;
}

/* An empty checkpoint named path, for the open functions. */
static lisa_status st_new(lisa_safetensors **out, const char *path) {
    *out = calloc(1, sizeof **out);
    if (!*out) return lisa_error_set(LISA_ERR_NOMEM, "out of memory opening %s", path);
    return st_str_dup(&(*out)->path, path);
}

/* Finishes an open: *out gets st, or st is closed on failure. */
static lisa_status st_open_done(lisa_safetensors **out, lisa_safetensors *st, lisa_status s) {
    if (s != LISA_OK) {
        lisa_safetensors_close(st);
        return s;
    }
    *out = st;
    return LISA_OK;
}

lisa_status lisa_safetensors_open_memory(lisa_safetensors **out, const char *name,
                                         const void *data, size_t len) {
    lisa_safetensors *st = NULL;
    *out = NULL;
    lisa_status s = st_new(&st, name);
    int fi = -1;
    if (s == LISA_OK) s = st_file_push(st, name, &fi);
    if (s == LISA_OK) {
        st_file *f = &st->files[fi];
        f->map = (void *)data; /* read only, as the mapping is */
        f->size = len;
        f->borrowed = true;
        s = st_header_parse(st, fi);
    }
    if (s == LISA_OK) s = st_table_finish(st);
    return st_open_done(out, st, s);
}

lisa_status lisa_safetensors_open_index_text(lisa_safetensors **out, const char *index_path,
                                             const char *text, size_t len) {
    lisa_safetensors *st = NULL;
    *out = NULL;
    lisa_status s = st_new(&st, index_path);
    if (s == LISA_OK) s = st_index_parse(st, index_path, text, len);
    return st_open_done(out, st, s);
}

void lisa_safetensors_release(const lisa_safetensors *st, const lisa_st_tensor *t) {
    const st_file *f = &st->files[t->file_index];
    long page = sysconf(_SC_PAGESIZE);
    if (f->borrowed || f->map == MAP_FAILED || page <= 0) return;
    uintptr_t a = ((uintptr_t)t->data + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    uintptr_t e = ((uintptr_t)t->data + t->nbytes) / (uintptr_t)page * (uintptr_t)page;
    if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
}

void lisa_safetensors_close(lisa_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->count; i++) free((char *)st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->nfiles; i++) st_file_unmap(&st->files[i]);
    free(st->files);
    free(st->path);
    free(st);
}

size_t lisa_safetensors_count(const lisa_safetensors *st) { return st->count; }

const lisa_st_tensor *lisa_safetensors_at(const lisa_safetensors *st, size_t i) {
    return i < st->count ? &st->tensors[i] : NULL;
}

const lisa_st_tensor *lisa_safetensors_find(const lisa_safetensors *st, const char *name) {
    if (st->count == 0) return NULL;
    return bsearch(name, st->tensors, st->count, sizeof *st->tensors, st_key_cmp);
}

lisa_status lisa_safetensors_get(const lisa_safetensors *st, const char *name, int ndim,
                                 const int64_t *shape, const lisa_st_tensor **out) {
    *out = NULL;
    const lisa_st_tensor *t = lisa_safetensors_find(st, name);
    if (!t) return lisa_error_set(LISA_ERR_MISSING, "tensor '%s' not found in %s", name, st->path);
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char want[160], got[160];
        st_shape_format(want, sizeof want, ndim, shape);
        st_shape_format(got, sizeof got, t->ndim, t->shape);
        return lisa_error_set(LISA_ERR_SHAPE, "tensor '%s': expected shape %s, found %s", name,
                              want, got);
    }
    *out = t;
    return LISA_OK;
}

lisa_tensor lisa_st_tensor_view(const lisa_st_tensor *t) {
    lisa_tensor v;
    memset(&v, 0, sizeof v);
    /* The mapping is PROT_READ: the const is cast away only because
     * lisa_tensor has one data pointer for inputs and outputs alike. */
    v.data = (void *)t->data;
    v.dtype = t->dtype;
    v.ndim = t->ndim;
    memcpy(v.shape, t->shape, sizeof v.shape);
    return v;
}
