/* test-image-cache.c: the per-image cache (coordinator/engine/image-cache.h):
 * identity by content (same hash with other bytes is a miss), LRU order of
 * eviction under the byte budget, the entry being filled never evicted,
 * replacing a value keeps the accounting, counters. */
#include <string.h>

#include "image-cache.h"
#include "testutil.h"

static float *floats(size_t n, float v) {
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = v;
    return f;
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    uint8_t a[100], b[100], c[100];
    memset(a, 1, sizeof a);
    memset(b, 2, sizeof b);
    memset(c, 3, sizeof c);
    uint64_t ha = lisa_image_hash(a, sizeof a), hb = lisa_image_hash(b, sizeof b),
             hc = lisa_image_hash(c, sizeof c);
    CHECK(ha != hb && hb != hc, "distinct hashes");
    CHECK(lisa_image_hash(a, 0) == lisa_image_hash(b, 0), "empty input hashes alike");

    lisa_image_cache cache;
    /* room for about two entries with 1000 floats each */
    size_t entry = sizeof a + 1000 * sizeof(float) + sizeof(lisa_image_entry);
    lisa_image_cache_init(&cache, 2 * entry + entry / 2);
    CHECK(lisa_image_cache_find(&cache, ha, a, sizeof a) == NULL && cache.misses == 1, "empty miss");
    lisa_image_entry *ea = lisa_image_cache_insert(&cache, ha, a, sizeof a);
    CHECK(ea && ea->n_bytes == sizeof a && !memcmp(ea->bytes, a, sizeof a), "insert copies bytes");
    lisa_image_cache_set_clip(&cache, ea, floats(1000, 1.0f), 1000);
    CHECK(lisa_image_cache_find(&cache, ha, a, sizeof a) == ea && cache.hits == 1, "hit");
    CHECK(lisa_image_cache_find(&cache, ha, b, sizeof b) == NULL, "same hash, other bytes: miss");
    CHECK(lisa_image_cache_find(&cache, ha, a, 50) == NULL, "same hash, other length: miss");

    lisa_image_entry *eb = lisa_image_cache_insert(&cache, hb, b, sizeof b);
    lisa_image_cache_set_clip(&cache, eb, floats(1000, 2.0f), 1000);
    CHECK(cache.n_entries == 2 && cache.evictions == 0, "two fit");
    /* touch a, so b is the least recently used */
    CHECK(lisa_image_cache_find(&cache, ha, a, sizeof a) == ea, "touch a");
    lisa_image_entry *ec = lisa_image_cache_insert(&cache, hc, c, sizeof c);
    lisa_image_cache_set_clip(&cache, ec, floats(1000, 3.0f), 1000);
    CHECK(cache.n_entries == 2 && cache.evictions == 1, "one evicted: %d entries, %lld evictions",
          cache.n_entries, (long long)cache.evictions);
    CHECK(lisa_image_cache_find(&cache, hb, b, sizeof b) == NULL, "the least recently used went");
    lisa_image_entry *fa = lisa_image_cache_find(&cache, ha, a, sizeof a);
    CHECK(fa && fa->clip && fa->clip[999] == 1.0f, "a kept with its features");
    CHECK(cache.used <= cache.budget, "within budget: %zu of %zu", cache.used, cache.budget);

    /* a value larger than the budget: the entry being filled stays, the rest go */
    lisa_image_entry *fc = lisa_image_cache_find(&cache, hc, c, sizeof c);
    CHECK(fc != NULL, "c present");
    if (fc) lisa_image_cache_set_sam(&cache, fc, floats(4000, 4.0f), 4000);
    CHECK(cache.n_entries == 1 && cache.head == fc && fc->sam && fc->clip,
          "oversized entry kept alone (%d entries)", cache.n_entries);
    /* replacing a value re-counts it */
    if (fc) lisa_image_cache_set_sam(&cache, fc, floats(10, 5.0f), 10);
    CHECK(cache.used == sizeof c + 1010 * sizeof(float) + sizeof(lisa_image_entry),
          "accounting after replace: %zu", cache.used);
    lisa_image_cache_free(&cache);
    CHECK(cache.n_entries == 0 && cache.head == NULL, "freed");
    return test_finish("test-image-cache");
}
