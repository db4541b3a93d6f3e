/* image-cache.h: per-image work shared by every request on the same image,
 * keyed by the image's content (its encoded bytes), within a byte budget
 * with least-recently-used eviction.
 *
 * An entry holds what is expensive to recompute and the same for every
 * prompt on that image: the projected CLIP features (N, C) and the SAM image
 * embedding (G, G, C), both host fp32. One image with many prompts therefore
 * runs CLIP once and the SAM encoder once, however many requests, batches
 * and submissions ask for it, as long as the entry stays within the budget.
 *
 * Identity is by content, not by path: a 64-bit hash finds candidates and
 * the bytes themselves (a copy is kept and counted in the budget) decide,
 * so two different images never share an entry.
 *
 * Deliberately not here: decoding, running models, thread safety (one
 * engine, one thread). */
#ifndef LISA_IMAGE_CACHE_H
#define LISA_IMAGE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct lisa_image_entry {
    uint64_t hash;
    uint8_t *bytes;          /* the encoded image, owned */
    size_t n_bytes;
    float *clip;             /* (N, C) projected CLIP features, or NULL */
    size_t clip_bytes;
    float *sam;              /* (G, G, C) SAM image embedding, or NULL */
    size_t sam_bytes;
    struct lisa_image_entry *prev, *next;  /* LRU list, most recent first */
} lisa_image_entry;

typedef struct lisa_image_cache {
    size_t budget;           /* bytes of entries kept (bytes + features) */
    size_t used;
    int n_entries;
    lisa_image_entry *head, *tail;
    int64_t hits, misses, evictions;
} lisa_image_cache;

/* 64-bit FNV-1a of the bytes. */
uint64_t lisa_image_hash(const uint8_t *bytes, size_t n);

void lisa_image_cache_init(lisa_image_cache *c, size_t budget);
void lisa_image_cache_free(lisa_image_cache *c);

/* The entry holding exactly these bytes (marked most recently used), or
 * NULL. Counts a hit or a miss. */
lisa_image_entry *lisa_image_cache_find(lisa_image_cache *c, uint64_t hash, const uint8_t *bytes,
                                        size_t n);

/* A new empty entry for these bytes (copied), most recently used; older
 * entries are evicted to stay within the budget. NULL when out of memory. */
lisa_image_entry *lisa_image_cache_insert(lisa_image_cache *c, uint64_t hash, const uint8_t *bytes,
                                          size_t n);

/* Hands a malloc'd (n) float array to the entry as its CLIP features or SAM
 * embedding (replacing any held) and evicts least recently used entries,
 * never `e` itself, to stay within the budget. An entry larger than the
 * whole budget lives until the next insert. */
void lisa_image_cache_set_clip(lisa_image_cache *c, lisa_image_entry *e, float *feats, size_t n);
void lisa_image_cache_set_sam(lisa_image_cache *c, lisa_image_entry *e, float *embedding, size_t n);

/* Stores a copy of v (n floats) as the CLIP features / SAM embedding of the
 * image with these bytes: its entry (found, counting a hit or a miss) or a
 * new one. Out of memory nothing is stored: the cache only forgets. */
void lisa_image_cache_store_clip(lisa_image_cache *c, uint64_t hash, const uint8_t *bytes,
                                 size_t n_bytes, const float *v, size_t n);
void lisa_image_cache_store_sam(lisa_image_cache *c, uint64_t hash, const uint8_t *bytes,
                                size_t n_bytes, const float *v, size_t n);

/* Whether two encoded images are the same bytes (their hashes first). */
int lisa_image_bytes_same(uint64_t ha, const uint8_t *a, size_t na, uint64_t hb, const uint8_t *b,
                          size_t nb);

#endif
