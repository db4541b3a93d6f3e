/* image-cache.c: content-keyed LRU cache of per-image work (see
 * image-cache.h). Entries are few (a budget of features, megabytes each for
 * real models), so lookup walks the LRU list. */
#include "image-cache.h"

#include <stdlib.h>
#include <string.h>

uint64_t lisa_image_hash(const uint8_t *bytes, size_t n) {
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= bytes[i];
        h *= 1099511628211ull;
    }
    return h;
}

void lisa_image_cache_init(lisa_image_cache *c, size_t budget) {
    memset(c, 0, sizeof *c);
    c->budget = budget;
}

static size_t entry_bytes(const lisa_image_entry *e) {
    return e->n_bytes + e->clip_bytes + e->sam_bytes + sizeof *e;
}

static void cache_unlink(lisa_image_cache *c, lisa_image_entry *e) {
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void cache_push_front(lisa_image_cache *c, lisa_image_entry *e) {
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static void cache_drop(lisa_image_cache *c, lisa_image_entry *e) {
    cache_unlink(c, e);
    c->used -= entry_bytes(e);
    c->n_entries--;
    free(e->bytes);
    free(e->clip);
    free(e->sam);
    free(e);
}

/* Evicts from the tail until within budget, sparing `keep`. */
static void cache_trim(lisa_image_cache *c, const lisa_image_entry *keep) {
    lisa_image_entry *e = c->tail;
    while (c->used > c->budget && e) {
        lisa_image_entry *prev = e->prev;
        if (e != keep) {
            cache_drop(c, e);
            c->evictions++;
        }
        e = prev;
    }
}

void lisa_image_cache_free(lisa_image_cache *c) {
    while (c->head) cache_drop(c, c->head);
    memset(c, 0, sizeof *c);
}

lisa_image_entry *lisa_image_cache_find(lisa_image_cache *c, uint64_t hash, const uint8_t *bytes,
                                        size_t n) {
    for (lisa_image_entry *e = c->head; e; e = e->next)
        if (lisa_image_bytes_same(e->hash, e->bytes, e->n_bytes, hash, bytes, n)) {
            cache_unlink(c, e);
            cache_push_front(c, e);
            c->hits++;
            return e;
        }
    c->misses++;
    return NULL;
}

lisa_image_entry *lisa_image_cache_insert(lisa_image_cache *c, uint64_t hash, const uint8_t *bytes,
                                          size_t n) {
    lisa_image_entry *e = calloc(1, sizeof *e);
    uint8_t *copy = malloc(n ? n : 1);
    if (!e || !copy) {
        free(e);
        free(copy);
        return NULL;
    }
    memcpy(copy, bytes, n);
    e->hash = hash;
    e->bytes = copy;
    e->n_bytes = n;
    cache_push_front(c, e);
    c->used += entry_bytes(e);
    c->n_entries++;
    cache_trim(c, e);
    return e;
}

static void cache_set(lisa_image_cache *c, lisa_image_entry *e, float **slot, size_t *slot_bytes,
                      float *data, size_t n) {
    c->used -= *slot_bytes;
    free(*slot);
    *slot = data;
    *slot_bytes = n * sizeof(float);
    c->used += *slot_bytes;
    cache_trim(c, e);
}

void lisa_image_cache_set_clip(lisa_image_cache *c, lisa_image_entry *e, float *feats, size_t n) {
    cache_set(c, e, &e->clip, &e->clip_bytes, feats, n);
}

void lisa_image_cache_set_sam(lisa_image_cache *c, lisa_image_entry *e, float *embedding, size_t n) {
    cache_set(c, e, &e->sam, &e->sam_bytes, embedding, n);
}

int lisa_image_bytes_same(uint64_t ha, const uint8_t *a, size_t na, uint64_t hb, const uint8_t *b,
                          size_t nb) {
    return ha == hb && na == nb && !memcmp(a, b, na);
}

static void cache_store(lisa_image_cache *c, uint64_t hash, const uint8_t *bytes, size_t n_bytes,
                        const float *v, size_t n, int sam) {
    float *copy = malloc(n * sizeof(float));
    if (!copy) return;
    lisa_image_entry *e = lisa_image_cache_find(c, hash, bytes, n_bytes);
    if (!e) e = lisa_image_cache_insert(c, hash, bytes, n_bytes);
    if (!e) {
        free(copy);
        return;
    }
    memcpy(copy, v, n * sizeof(float));
    if (sam) lisa_image_cache_set_sam(c, e, copy, n);
    else lisa_image_cache_set_clip(c, e, copy, n);
}

void lisa_image_cache_store_clip(lisa_image_cache *c, uint64_t hash, const uint8_t *bytes,
                                 size_t n_bytes, const float *v, size_t n) {
    cache_store(c, hash, bytes, n_bytes, v, n, 0);
}

void lisa_image_cache_store_sam(lisa_image_cache *c, uint64_t hash, const uint8_t *bytes,
                                size_t n_bytes, const float *v, size_t n) {
    cache_store(c, hash, bytes, n_bytes, v, n, 1);
}
