/* tokenizer.c: LLaMA's SentencePiece BPE tokenizer (see tokenizer.h).
 *
 * What it does, following the sentencepiece library (normalizer.cc,
 * bpe_model.cc, sentencepiece_processor.cc):
 *  - normalization: identity only (no precompiled charsmap), ' ' -> U+2581
 *    (escape_whitespaces), the dummy `▁` prefix, optional
 *    remove_extra_whitespaces, malformed UTF-8 bytes -> U+FFFD;
 *  - BPE: split into UTF-8 characters (user-defined pieces are matched as
 *    whole frozen symbols), repeatedly merge the adjacent pair whose
 *    concatenation is a NORMAL/USER_DEFINED/UNUSED piece with the highest
 *    score (ties: leftmost), driven by a binary heap with lazy invalidation;
 *    merged UNUSED pieces are re-split into the symbols they came from;
 *  - unknown symbols become one `<0xNN>` byte piece per byte (byte_fallback),
 *    or one merged unk id per run when byte_fallback is off;
 *  - decoding as DecodeIds: `▁` -> ' ', the first piece's dummy-prefix space
 *    dropped, byte runs reassembled (malformed bytes -> U+FFFD), control
 *    pieces invisible, unk -> unk_surface.
 * With added tokens loaded it follows transformers 4.31's slow tokenizer
 * (PreTrainedTokenizer.tokenize + LlamaTokenizer legacy _tokenize): the text
 * is split on added tokens and on the model's <unk>/<s>/</s> pieces (which
 * from_pretrained makes unsplittable), leftmost-longest; the neighbours of an
 * added token lose their whitespace on the side facing it (Python
 * str.isspace() characters; <unk>/<s>/</s> strip nothing); empty chunks are
 * dropped and every other chunk is encoded on its own, with its own dummy
 * prefix.
 *
 * Deliberately not here: unigram/word/char models, normalization rule
 * tables (NFKC charsmaps), treat_whitespace_as_suffix, sampling/n-best,
 * BOS policy beyond a leading BOS, chat templates and `<image>` splicing. */
#include "tokenizer.h"

#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sentencepiece_model.pb-c.h"

enum {
    PIECE_NORMAL = 1,
    PIECE_UNKNOWN = 2,
    PIECE_CONTROL = 3,
    PIECE_USER_DEFINED = 4,
    PIECE_UNUSED = 5,
    PIECE_BYTE = 6
};

/* An open-addressing string -> id table over strings owned elsewhere. */
typedef struct {
    int32_t *slots; /* -1 when empty */
    size_t mask;
} tok_map;

/* A token that the added-token splitter cuts out of the text. */
typedef struct {
    const char *text;
    size_t len;
    int32_t id;
    int strip; /* strips whitespace of its neighbours (plain added tokens) */
} tok_special;

struct lisa_tokenizer {
    int n_pieces;
    const char **piece; /* NUL-terminated, into `arena` */
    uint32_t *piece_len;
    float *score;
    uint8_t *type;
    int16_t *byte_of; /* byte value of a BYTE piece, -1 otherwise */
    char *arena;
    tok_map normal;   /* NORMAL, USER_DEFINED, UNUSED (sentencepiece's pieces_) */
    tok_map reserved; /* CONTROL, UNKNOWN, BYTE (reserved_id_map_) */
    int unk_id, bos_id, eos_id;
    int byte_fallback;
    int32_t byte_id[256];
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    int has_unused;
    size_t max_user_len; /* longest USER_DEFINED piece, 0 when none */
    char *unk_surface;

    int added_mode; /* added_tokens.json given: HF-style splitting */
    int n_added;
    char **added_text;
    int32_t *added_id;
    char **added_by_id; /* index id - n_pieces, NULL for gaps */
    tok_special *special;
    int n_special;
    int n_vocab;
};

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static const char k_space_sym[] = "\xe2\x96\x81"; /* U+2581 */

/* FNV-1a over a byte string. */
static uint64_t tok_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Allocates a table for up to n entries. Returns 0 on allocation failure. */
static int tok_map_init(tok_map *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 1) cap <<= 1;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return 0;
    for (size_t i = 0; i < cap; i++) m->slots[i] = -1;
    m->mask = cap - 1;
    return 1;
}

/* Looks up piece text s[0..n) in `m`; -1 when absent. */
static int32_t tok_map_find(const lisa_tokenizer *t, const tok_map *m, const char *s, size_t n) {
    size_t i = (size_t)tok_hash(s, n) & m->mask;
    for (;;) {
        int32_t id = m->slots[i];
        if (id < 0) return -1;
        if (t->piece_len[id] == n && !memcmp(t->piece[id], s, n)) return id;
        i = (i + 1) & m->mask;
    }
}

/* Inserts piece `id`; returns 0 when a piece with the same text is present. */
static int tok_map_insert(const lisa_tokenizer *t, tok_map *m, int32_t id) {
    if (tok_map_find(t, m, t->piece[id], t->piece_len[id]) >= 0) return 0;
    size_t i = (size_t)tok_hash(t->piece[id], t->piece_len[id]) & m->mask;
    while (m->slots[i] >= 0) i = (i + 1) & m->mask;
    m->slots[i] = id;
    return 1;
}

/* sentencepiece's PieceToId: reserved pieces first, then normal ones, else unk. */
static int32_t tok_piece_to_id(const lisa_tokenizer *t, const char *s, size_t n) {
    int32_t id = tok_map_find(t, &t->reserved, s, n);
    if (id >= 0) return id;
    id = tok_map_find(t, &t->normal, s, n);
    return id >= 0 ? id : t->unk_id;
}

/* sentencepiece's DecodeUTF8 validity: length of the valid character at s
 * (1..4, surrogates/overlongs/>U+10FFFF rejected), or 0 when malformed. */
static size_t tok_utf8_valid_len(const unsigned char *s, size_t n, uint32_t *cp_out) {
    uint32_t cp;
    size_t len;
    if (s[0] < 0x80) {
        cp = s[0];
        len = 1;
    } else if (n >= 2 && (s[0] & 0xE0) == 0xC0) {
        cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        if ((s[1] & 0xC0) != 0x80 || cp < 0x80) return 0;
        len = 2;
    } else if (n >= 3 && (s[0] & 0xF0) == 0xE0) {
        cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || cp < 0x800) return 0;
        len = 3;
    } else if (n >= 4 && (s[0] & 0xF8) == 0xF0) {
        cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
             ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80 ||
            cp < 0x10000)
            return 0;
        len = 4;
    } else {
        return 0;
    }
    if ((cp >= 0xD800 && cp < 0xE000) || cp > 0x10FFFF) return 0;
    if (cp_out) *cp_out = cp;
    return len;
}

/* sentencepiece's OneCharLen: character length from the lead byte only. */
static size_t tok_one_char_len(unsigned char c) {
    static const unsigned char k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return k_len[c >> 4];
}

/* Python's str.isspace() for one code point (what str.strip() removes). */
static int tok_is_py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* A growable byte or id buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} tok_buf;

static int tok_buf_put(tok_buf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

typedef struct {
    int32_t *p;
    size_t n, cap;
} tok_ids;

static int tok_ids_push(tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->p, cap * sizeof *p);
        if (!p) return 0;
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = id;
    return 1;
}

/* ------------------------------------------------------------------ */
/* loading                                                              */

/* Reads a whole file into a malloc'd buffer (NUL-terminated). */
static lisa_status tok_read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return lisa_error_set(LISA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    tok_buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (!tok_buf_put(&b, chunk, got)) {
            fclose(f);
            free(b.p);
            return lisa_error_set(LISA_ERR_NOMEM, "out of memory reading %s", path);
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(b.p);
        return lisa_error_set(LISA_ERR_IO, "read error on %s", path);
    }
    if (!b.p && !tok_buf_put(&b, "", 0))
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory reading %s", path);
    *out = b.p;
    *len = b.n;
    return LISA_OK;
}

/* Parses "<0xNN>" into its byte value, -1 when it is not of that form. */
static int tok_parse_byte_piece(const char *s) {
    if (strlen(s) != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Copies the pieces of a parsed ModelProto into `t` and checks them as
 * sentencepiece's ModelInterface::InitializePieces does, and more strictly:
 * every piece non-empty valid UTF-8 with a finite score and a known type, no
 * text twice (in either map), byte pieces exactly <0xNN>, one unk piece that
 * trainer_spec.unk_id names. Errors name the piece index. */
static lisa_status tok_init_pieces(lisa_tokenizer *t, const Sentencepiece__ModelProto *mp,
                                   const char *path) {
    if (mp->n_pieces == 0)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: SentencePiece model has no pieces", path);
    if (mp->n_pieces > (size_t)INT32_MAX / 2)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: too many pieces", path);
    if (!mp->trainer_spec || !mp->normalizer_spec)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "%s: SentencePiece model lacks its %s (truncated file?)", path,
                              !mp->trainer_spec ? "trainer_spec" : "normalizer_spec");
    int n = (int)mp->n_pieces;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const Sentencepiece__ModelProto__SentencePiece *sp = mp->pieces[i];
        if (!sp->piece || !sp->piece[0])
            return lisa_error_set(LISA_ERR_FORMAT, "%s: piece %d is empty", path, i);
        if ((int)sp->type < PIECE_NORMAL || (int)sp->type > PIECE_BYTE)
            return lisa_error_set(LISA_ERR_FORMAT, "%s: piece %d has unknown type %d", path, i,
                                  (int)sp->type);
        /* Encoding matches pieces against normalized text, which is always
         * valid UTF-8: a malformed piece could never match and would be
         * printed as garbage, so it is a broken model, not a piece to skip. */
        size_t len = strlen(sp->piece);
        for (size_t k = 0; k < len;) {
            size_t l = tok_utf8_valid_len((const unsigned char *)sp->piece + k, len - k, NULL);
            if (!l)
                return lisa_error_set(LISA_ERR_FORMAT,
                                      "%s: piece %d is not valid UTF-8 (bad byte 0x%02X at offset "
                                      "%zu)",
                                      path, i, (unsigned char)sp->piece[k], k);
            k += l;
        }
        if (!isfinite(sp->score))
            return lisa_error_set(LISA_ERR_FORMAT, "%s: piece %d ('%s') has a non-finite score %g",
                                  path, i, sp->piece, (double)sp->score);
        total += len + 1;
    }
    t->n_pieces = n;
    t->piece = calloc((size_t)n, sizeof *t->piece);
    t->piece_len = calloc((size_t)n, sizeof *t->piece_len);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->type = calloc((size_t)n, sizeof *t->type);
    t->byte_of = calloc((size_t)n, sizeof *t->byte_of);
    t->arena = malloc(total);
    if (!t->piece || !t->piece_len || !t->score || !t->type || !t->byte_of || !t->arena ||
        !tok_map_init(&t->normal, (size_t)n) || !tok_map_init(&t->reserved, (size_t)n))
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory loading %s", path);
    const Sentencepiece__TrainerSpec *ts = mp->trainer_spec;
    t->byte_fallback = ts->byte_fallback;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    t->unk_id = -1;
    char *w = t->arena;
    for (int i = 0; i < n; i++) {
        const Sentencepiece__ModelProto__SentencePiece *sp = mp->pieces[i];
        size_t len = strlen(sp->piece);
        memcpy(w, sp->piece, len + 1);
        t->piece[i] = w;
        t->piece_len[i] = (uint32_t)len;
        w += len + 1;
        t->score[i] = sp->score;
        int ty = (int)sp->type;
        t->type[i] = (uint8_t)ty;
        t->byte_of[i] = -1;
        int is_normal = ty == PIECE_NORMAL || ty == PIECE_USER_DEFINED ||
                        ty == PIECE_UNUSED;
        /* sentencepiece allows one text in both maps; piece_id() could then
         * answer either, so any repeat is refused. */
        int32_t dup = tok_map_find(t, &t->normal, t->piece[i], len);
        if (dup < 0) dup = tok_map_find(t, &t->reserved, t->piece[i], len);
        if (dup >= 0)
            return lisa_error_set(LISA_ERR_FORMAT, "%s: piece %d ('%s') duplicates piece %d",
                                  path, i, sp->piece, (int)dup);
        tok_map_insert(t, is_normal ? &t->normal : &t->reserved, i);
        if (ty == PIECE_USER_DEFINED && len > t->max_user_len) t->max_user_len = len;
        if (ty == PIECE_UNUSED) t->has_unused = 1;
        if (ty == PIECE_UNKNOWN) {
            if (t->unk_id >= 0)
                return lisa_error_set(LISA_ERR_FORMAT,
                                      "%s: piece %d is a second unk (UNKNOWN) piece after piece %d",
                                      path, i, t->unk_id);
            t->unk_id = i;
        }
        if (ty == PIECE_BYTE) {
            if (!t->byte_fallback)
                return lisa_error_set(LISA_ERR_FORMAT,
                                      "%s: piece %d ('%s') is a byte piece although "
                                      "trainer_spec.byte_fallback is false",
                                      path, i, sp->piece);
            int b = tok_parse_byte_piece(sp->piece);
            if (b < 0)
                return lisa_error_set(LISA_ERR_FORMAT,
                                      "%s: piece %d ('%s') is a byte piece but not of the form "
                                      "<0xNN>",
                                      path, i, sp->piece);
            t->byte_id[b] = i;
            t->byte_of[i] = (int16_t)b;
        }
    }
    if (t->unk_id < 0)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: no piece has type UNKNOWN (the unk piece)",
                              path);
    if (ts->unk_id != t->unk_id)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "%s: trainer_spec.unk_id %d is not the unk piece (piece %d)", path,
                              ts->unk_id, t->unk_id);
    if (t->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (t->byte_id[b] < 0)
                return lisa_error_set(LISA_ERR_FORMAT,
                                      "%s: byte_fallback is set but byte piece <0x%02X> is "
                                      "missing",
                                      path, b);
    return LISA_OK;
}

/* Reads the trainer and normalizer options the encoder depends on. */
static lisa_status tok_init_specs(lisa_tokenizer *t, const Sentencepiece__ModelProto *mp,
                                  const char *path) {
    const Sentencepiece__TrainerSpec *ts = mp->trainer_spec;
    const Sentencepiece__NormalizerSpec *ns = mp->normalizer_spec;
    if (ts->model_type != SENTENCEPIECE__TRAINER_SPEC__MODEL_TYPE__BPE)
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "%s: SentencePiece model_type %d is not BPE (only BPE is supported)",
                              path, (int)ts->model_type);
    if (ts->treat_whitespace_as_suffix)
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "%s: treat_whitespace_as_suffix is not supported", path);
    if ((ns->has_precompiled_charsmap && ns->precompiled_charsmap.len > 0) ||
        (mp->denormalizer_spec && mp->denormalizer_spec->has_precompiled_charsmap &&
         mp->denormalizer_spec->precompiled_charsmap.len > 0))
        return lisa_error_set(LISA_ERR_UNSUPPORTED,
                              "%s: normalization rules (precompiled_charsmap) are not supported",
                              path);
    t->add_dummy_prefix = ns->add_dummy_prefix;
    t->remove_extra_ws = ns->remove_extra_whitespaces;
    t->escape_ws = ns->escape_whitespaces;
    /* The special ids come from the trainer spec; -1 disables one. */
    t->bos_id = ts->bos_id;
    t->eos_id = ts->eos_id;
    /* LISA's prompts start with BOS and generation stops at EOS, so both
     * must be real control pieces (as the sentencepiece trainer makes them). */
    const int special[2] = {t->bos_id, t->eos_id};
    static const char *const special_name[2] = {"bos_id", "eos_id"};
    for (int k = 0; k < 2; k++) {
        int id = special[k];
        if (id < 0 || id >= t->n_pieces)
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "%s: trainer_spec.%s %d names no piece (the model has %d pieces)", path,
                                  special_name[k], id, t->n_pieces);
        if (t->type[id] != PIECE_CONTROL)
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "%s: trainer_spec.%s %d is piece %d ('%s') of type %d, not a "
                                  "CONTROL piece",
                                  path, special_name[k], id, id, t->piece[id], (int)t->type[id]);
    }
    if (t->bos_id == t->eos_id)
        return lisa_error_set(LISA_ERR_FORMAT, "%s: trainer_spec.bos_id and eos_id are both %d",
                              path, t->bos_id);
    const char *surf = ts->unk_surface ? ts->unk_surface : " \xE2\x81\x87 ";
    for (size_t k = 0, n = strlen(surf); k < n;) {
        size_t l = tok_utf8_valid_len((const unsigned char *)surf + k, n - k, NULL);
        if (!l)
            return lisa_error_set(LISA_ERR_FORMAT,
                                  "%s: trainer_spec.unk_surface is not valid UTF-8 (offset %zu)",
                                  path, k);
        k += l;
    }
    t->unk_surface = strdup(surf);
    if (!t->unk_surface) return lisa_error_set(LISA_ERR_NOMEM, "out of memory loading %s", path);
    return LISA_OK;
}

/* Parses added_tokens.json ({"piece": id, ...}, len bytes of buf, read
 * from path) into `t`. Ids must lie at or after the SentencePiece
 * vocabulary and be distinct. */
static lisa_status tok_parse_added(lisa_tokenizer *t, const char *path, const char *buf,
                                   size_t len) {
    cJSON *root = cJSON_ParseWithLength(buf, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lisa_error_set(LISA_ERR_FORMAT, "%s: not a JSON object of added tokens", path);
    }
    lisa_status st = LISA_OK;
    int n = cJSON_GetArraySize(root);
    int max_id = t->n_pieces - 1;
    t->added_text = calloc((size_t)n + 1, sizeof *t->added_text);
    t->added_id = calloc((size_t)n + 1, sizeof *t->added_id);
    if (!t->added_text || !t->added_id) {
        st = lisa_error_set(LISA_ERR_NOMEM, "out of memory loading %s", path);
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        const char *key = it->string;
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (!key || !key[0]) {
            st = lisa_error_set(LISA_ERR_FORMAT, "%s: empty added token", path);
            goto done;
        }
        if (!cJSON_IsNumber(it) || v != floor(v) || v < t->n_pieces || v > 16777216.0) {
            st = lisa_error_set(LISA_ERR_FORMAT,
                                "%s: added token '%s' needs an integer id >= %d (the "
                                "SentencePiece vocabulary size)",
                                path, key, t->n_pieces);
            goto done;
        }
        int id = (int)v;
        for (int j = 0; j < t->n_added; j++)
            if (t->added_id[j] == id || !strcmp(t->added_text[j], key)) {
                st = lisa_error_set(LISA_ERR_FORMAT, "%s: added token '%s' / id %d repeated",
                                    path, key, id);
                goto done;
            }
        t->added_text[t->n_added] = strdup(key);
        if (!t->added_text[t->n_added]) {
            st = lisa_error_set(LISA_ERR_NOMEM, "out of memory loading %s", path);
            goto done;
        }
        t->added_id[t->n_added++] = id;
        if (id > max_id) max_id = id;
    }
    t->n_vocab = max_id + 1;
    t->added_by_id = calloc((size_t)(t->n_vocab - t->n_pieces) + 1, sizeof *t->added_by_id);
    if (!t->added_by_id) {
        st = lisa_error_set(LISA_ERR_NOMEM, "out of memory loading %s", path);
        goto done;
    }
    for (int j = 0; j < t->n_added; j++)
        t->added_by_id[t->added_id[j] - t->n_pieces] = t->added_text[j];
done:
    cJSON_Delete(root);
    return st;
}

/* Builds the splitter's token list: the added tokens (strip their
 * neighbours) and the unk/bos/eos pieces (strip nothing), as transformers
 * 4.31 from_pretrained + add_tokens set up unique_no_split_tokens. */
static lisa_status tok_init_specials(lisa_tokenizer *t) {
    t->special = calloc((size_t)t->n_added + 3, sizeof *t->special);
    if (!t->special) return lisa_error_set(LISA_ERR_NOMEM, "out of memory building tokenizer");
    for (int j = 0; j < t->n_added; j++)
        t->special[t->n_special++] =
            (tok_special){t->added_text[j], strlen(t->added_text[j]), t->added_id[j], 1};
    const int ctl[3] = {t->unk_id, t->bos_id, t->eos_id};
    for (int k = 0; k < 3; k++) {
        int id = ctl[k], dup = 0;
        if (id < 0) continue;
        for (int j = 0; j < t->n_special; j++)
            if (t->special[j].len == t->piece_len[id] &&
                !memcmp(t->special[j].text, t->piece[id], t->piece_len[id]))
                dup = 1;
        if (!dup)
            t->special[t->n_special++] = (tok_special){t->piece[id], t->piece_len[id], id, 0};
    }
    return LISA_OK;
}

lisa_status lisa_tokenizer_load_memory(lisa_tokenizer **out, const char *model_path,
                                       const uint8_t *model, size_t model_len,
                                       const char *added_tokens_path, const char *added,
                                       size_t added_len) {
    if (!out || !model_path || (!model && model_len) || (added && !added_tokens_path))
        return lisa_error_set(LISA_ERR_ARG, "lisa_tokenizer_load_memory: NULL argument");
    *out = NULL;
    Sentencepiece__ModelProto *mp = sentencepiece__model_proto__unpack(
        NULL, model_len, model ? model : (const uint8_t *)"");
    if (!mp)
        return lisa_error_set(LISA_ERR_FORMAT,
                              "%s: not a SentencePiece model (protobuf parse failed: corrupt or "
                              "truncated file)",
                              model_path);
    lisa_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        sentencepiece__model_proto__free_unpacked(mp, NULL);
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory loading %s", model_path);
    }
    lisa_status st = tok_init_pieces(t, mp, model_path);
    if (st == LISA_OK) st = tok_init_specs(t, mp, model_path);
    sentencepiece__model_proto__free_unpacked(mp, NULL);
    if (st == LISA_OK) {
        t->n_vocab = t->n_pieces;
        if (added) {
            t->added_mode = 1;
            st = tok_parse_added(t, added_tokens_path, added, added_len);
            if (st == LISA_OK) st = tok_init_specials(t);
        }
    }
    if (st != LISA_OK) {
        lisa_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LISA_OK;
}

lisa_status lisa_tokenizer_load(lisa_tokenizer **out, const char *model_path,
                                const char *added_tokens_path) {
    if (!out || !model_path)
        return lisa_error_set(LISA_ERR_ARG, "lisa_tokenizer_load: NULL argument");
    *out = NULL;
    char *buf = NULL, *added = NULL;
    size_t len = 0, added_len = 0;
    LISA_TRY(tok_read_file(model_path, &buf, &len));
    lisa_status st = LISA_OK;
    if (added_tokens_path) st = tok_read_file(added_tokens_path, &added, &added_len);
    if (st == LISA_OK)
        st = lisa_tokenizer_load_memory(out, model_path, (const uint8_t *)buf, len,
                                        added_tokens_path, added, added_len);
    free(buf);
    free(added);
    return st;
}

void lisa_tokenizer_free(lisa_tokenizer *t) {
    if (!t) return;
    free(t->piece);
    free(t->piece_len);
    free(t->score);
    free(t->type);
    free(t->byte_of);
    free(t->arena);
    free(t->normal.slots);
    free(t->reserved.slots);
    free(t->unk_surface);
    if (t->added_text)
        for (int j = 0; j < t->n_added; j++) free(t->added_text[j]);
    free(t->added_text);
    free(t->added_id);
    free(t->added_by_id);
    free(t->special);
    free(t);
}

/* ------------------------------------------------------------------ */
/* SentencePiece encoding                                               */

/* Longest USER_DEFINED piece that prefixes s[0..n), 0 when none. */
static size_t tok_user_prefix(const lisa_tokenizer *t, const char *s, size_t n) {
    size_t max = t->max_user_len < n ? t->max_user_len : n;
    for (size_t l = max; l > 0; l--) {
        int32_t id = tok_map_find(t, &t->normal, s, l);
        if (id >= 0 && t->type[id] == PIECE_USER_DEFINED) return l;
    }
    return 0;
}

/* Normalizer::Normalize for an identity-normalization spec. */
static int tok_normalize(const lisa_tokenizer *t, const char *in, size_t n, tok_buf *out) {
    const unsigned char *s = (const unsigned char *)in;
    const char *sp_sym = t->escape_ws ? k_space_sym : " ";
    size_t sp_len = t->escape_ws ? 3 : 1;
    size_t i = 0;
    if (n == 0) return 1;
    /* With remove_extra_whitespaces the leading spaces go. Every prefix the
     * normalizer yields is the character itself here, so " " is one byte. */
    if (t->remove_extra_ws)
        while (i < n && s[i] == ' ') i++;
    if (i == n) return 1;
    if (t->add_dummy_prefix && !tok_buf_put(out, sp_sym, sp_len)) return 0;
    int is_prev_space = t->remove_extra_ws;
    while (i < n) {
        size_t l = tok_user_prefix(t, in + i, n - i);
        const char *chunk = in + i;
        size_t chunk_len = l, consumed = l;
        if (!l) {
            l = tok_utf8_valid_len(s + i, n - i, NULL);
            if (l) {
                chunk_len = consumed = l;
            } else {
                chunk = "\xEF\xBF\xBD"; /* U+FFFD for one malformed byte */
                chunk_len = 3;
                consumed = 1;
            }
        }
        while (is_prev_space && chunk_len > 0 && chunk[0] == ' ') {
            chunk++;
            chunk_len--;
        }
        if (chunk_len > 0) {
            for (size_t k = 0; k < chunk_len; k++) {
                int ok = (t->escape_ws && chunk[k] == ' ') ? tok_buf_put(out, k_space_sym, 3)
                                                           : tok_buf_put(out, chunk + k, 1);
                if (!ok) return 0;
            }
            is_prev_space = chunk[chunk_len - 1] == ' ';
        }
        i += consumed;
        if (!t->remove_extra_ws) is_prev_space = 0;
    }
    if (t->remove_extra_ws)
        while (out->n >= sp_len && !memcmp(out->p + out->n - sp_len, sp_sym, sp_len)) {
            out->n -= sp_len;
            out->p[out->n] = 0;
        }
    return 1;
}

typedef struct {
    int prev, next;
    int freeze;
    size_t off, len; /* into the normalized text; len 0 once merged away */
} tok_symbol;

typedef struct {
    int left, right;
    float score;
    size_t size;
} tok_pair;

/* Heap order of sentencepiece's SymbolPairComparator: higher score first,
 * then the leftmost pair. */
static int tok_pair_before(const tok_pair *a, const tok_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    tok_pair *p;
    size_t n, cap;
} tok_heap;

static int tok_heap_push(tok_heap *h, tok_pair v) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        tok_pair *p = realloc(h->p, cap * sizeof *p);
        if (!p) return 0;
        h->p = p;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!tok_pair_before(&v, &h->p[parent])) break;
        h->p[i] = h->p[parent];
        i = parent;
    }
    h->p[i] = v;
    return 1;
}

static tok_pair tok_heap_pop(tok_heap *h) {
    tok_pair top = h->p[0], last = h->p[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && tok_pair_before(&h->p[c + 1], &h->p[c])) c++;
        if (!tok_pair_before(&h->p[c], &last)) break;
        h->p[i] = h->p[c];
        i = c;
    }
    if (h->n) h->p[i] = last;
    return top;
}

/* Per-call BPE state. rev_* record, for merged UNUSED pieces, the two
 * symbols they were made from (sentencepiece's rev_merge), keyed by id:
 * the lengths of the left and right parts (0 when never merged here). */
typedef struct {
    const lisa_tokenizer *t;
    const char *text;
    tok_symbol *sym;
    tok_heap heap;
    size_t *rev_left, *rev_right;
} tok_bpe;

/* MaybeAddNewSymbolPair: queues (left, right) when their concatenation is a
 * piece. Returns 0 on allocation failure. */
static int tok_bpe_add_pair(tok_bpe *b, int left, int right) {
    if (left < 0 || right < 0 || b->sym[left].freeze || b->sym[right].freeze) return 1;
    size_t size = b->sym[left].len + b->sym[right].len;
    int32_t id = tok_map_find(b->t, &b->t->normal, b->text + b->sym[left].off, size);
    if (id < 0) return 1;
    if (!tok_heap_push(&b->heap, (tok_pair){left, right, b->t->score[id], size})) return 0;
    if (b->t->type[id] == PIECE_UNUSED) {
        b->rev_left[id] = b->sym[left].len;
        b->rev_right[id] = b->sym[right].len;
    }
    return 1;
}

/* Appends the ids of one final piece text[off..off+len) (resegmenting
 * UNUSED pieces, then byte fallback). `prev_unk` tracks unk runs. */
static int tok_bpe_emit(tok_bpe *b, size_t off, size_t len, int *prev_unk, tok_ids *out) {
    const lisa_tokenizer *t = b->t;
    int32_t id = tok_piece_to_id(t, b->text + off, len);
    if (t->type[id] == PIECE_UNUSED && b->rev_left && b->rev_left[id] + b->rev_right[id] == len) {
        size_t l = b->rev_left[id], r = b->rev_right[id];
        return tok_bpe_emit(b, off, l, prev_unk, out) && tok_bpe_emit(b, off + l, r, prev_unk, out);
    }
    int is_unk = t->type[id] == PIECE_UNKNOWN;
    if (is_unk && t->byte_fallback) {
        for (size_t k = 0; k < len; k++)
            if (!tok_ids_push(out, t->byte_id[(unsigned char)b->text[off + k]])) return 0;
    } else if (!(is_unk && *prev_unk)) {
        if (!tok_ids_push(out, id)) return 0;
    }
    *prev_unk = is_unk;
    return 1;
}

/* Encodes text[0..n) with SentencePiece alone, appending to `out`. */
static lisa_status tok_sp_encode(const lisa_tokenizer *t, const char *text, size_t n,
                                 tok_ids *out) {
    tok_buf norm = {0};
    tok_bpe b = {.t = t};
    lisa_status st = LISA_OK;
    if (!tok_normalize(t, text, n, &norm)) goto nomem;
    if (norm.n == 0) goto done;
    if (norm.n > (size_t)INT_MAX / 2) {
        st = lisa_error_set(LISA_ERR_ARG, "text too long to tokenize (%zu bytes)", n);
        goto done;
    }
    b.text = norm.p;
    b.sym = malloc(norm.n * sizeof *b.sym);
    if (!b.sym) goto nomem;
    if (t->has_unused) {
        b.rev_left = calloc((size_t)t->n_pieces, sizeof *b.rev_left);
        b.rev_right = calloc((size_t)t->n_pieces, sizeof *b.rev_right);
        if (!b.rev_left || !b.rev_right) goto nomem;
    }
    int n_sym = 0;
    for (size_t i = 0; i < norm.n; n_sym++) {
        size_t l = tok_user_prefix(t, norm.p + i, norm.n - i);
        int freeze = l > 0;
        if (!l) l = tok_one_char_len((unsigned char)norm.p[i]);
        if (l > norm.n - i) l = norm.n - i;
        b.sym[n_sym] = (tok_symbol){n_sym - 1, 0, freeze, i, l};
        i += l;
        b.sym[n_sym].next = i < norm.n ? n_sym + 1 : -1;
    }
    for (int i = 1; i < n_sym; i++)
        if (!tok_bpe_add_pair(&b, i - 1, i)) goto nomem;
    while (b.heap.n) {
        tok_pair top = tok_heap_pop(&b.heap);
        tok_symbol *l = &b.sym[top.left], *r = &b.sym[top.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != top.size) continue; /* stale */
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) b.sym[r->next].prev = top.left;
        r->len = 0;
        if (!tok_bpe_add_pair(&b, l->prev, top.left) || !tok_bpe_add_pair(&b, top.left, l->next))
            goto nomem;
    }
    int prev_unk = 0;
    for (int i = 0; i != -1; i = b.sym[i].next)
        if (!tok_bpe_emit(&b, b.sym[i].off, b.sym[i].len, &prev_unk, out)) goto nomem;
    goto done;
nomem:
    st = lisa_error_set(LISA_ERR_NOMEM, "out of memory while tokenizing");
done:
    free(norm.p);
    free(b.sym);
    free(b.heap.p);
    free(b.rev_left);
    free(b.rev_right);
    return st;
}

/* ------------------------------------------------------------------ */
/* added-token splitting (transformers 4.31 PreTrainedTokenizer.tokenize) */

typedef struct {
    size_t off, len;
} tok_seg;

/* The special token whose text is exactly s[0..n), NULL when none. */
static const tok_special *tok_special_exact(const lisa_tokenizer *t, const char *s, size_t n) {
    for (int j = 0; j < t->n_special; j++)
        if (t->special[j].len == n && !memcmp(t->special[j].text, s, n)) return &t->special[j];
    return NULL;
}

/* Longest special token starting at s[0..n), NULL when none. */
static const tok_special *tok_special_at(const lisa_tokenizer *t, const char *s, size_t n) {
    const tok_special *best = NULL;
    for (int j = 0; j < t->n_special; j++) {
        const tok_special *sp = &t->special[j];
        if (sp->len <= n && (!best || sp->len > best->len) && !memcmp(sp->text, s, sp->len))
            best = sp;
    }
    return best;
}

/* str.lstrip(): skips leading Python-whitespace characters of a segment. */
static void tok_seg_lstrip(const char *text, tok_seg *g) {
    const unsigned char *s = (const unsigned char *)text;
    while (g->len > 0) {
        uint32_t cp;
        size_t l = tok_utf8_valid_len(s + g->off, g->len, &cp);
        if (!l || !tok_is_py_space(cp)) break;
        g->off += l;
        g->len -= l;
    }
}

/* str.rstrip(): drops trailing Python-whitespace characters of a segment. */
static void tok_seg_rstrip(const char *text, tok_seg *g) {
    const unsigned char *s = (const unsigned char *)text;
    while (g->len > 0) {
        size_t end = g->off + g->len, q = end - 1;
        while (q > g->off && end - q < 4 && (s[q] & 0xC0) == 0x80) q--;
        uint32_t cp;
        size_t l = tok_utf8_valid_len(s + q, end - q, &cp);
        if (l != end - q || !tok_is_py_space(cp)) break;
        g->len -= l;
    }
}

/* Encodes with added tokens split out first; appends to `out`. */
static lisa_status tok_added_encode(const lisa_tokenizer *t, const char *text, size_t n,
                                    tok_ids *out) {
    /* Trie.split: cut at every leftmost-longest special token occurrence. */
    size_t cap = 16, n_seg = 0, start = 0;
    tok_seg *seg = malloc(cap * sizeof *seg);
    if (!seg) return lisa_error_set(LISA_ERR_NOMEM, "out of memory while tokenizing");
    for (size_t i = 0; i <= n; i++) {
        const tok_special *sp = i < n ? tok_special_at(t, text + i, n - i) : NULL;
        if (!sp && i < n) continue;
        if (n_seg + 2 > cap) {
            cap *= 2;
            tok_seg *p = realloc(seg, cap * sizeof *seg);
            if (!p) {
                free(seg);
                return lisa_error_set(LISA_ERR_NOMEM, "out of memory while tokenizing");
            }
            seg = p;
        }
        if (i > start) seg[n_seg++] = (tok_seg){start, i - start};
        if (sp) {
            seg[n_seg++] = (tok_seg){i, sp->len};
            i += sp->len - 1;
            start = i + 1;
        }
    }
    /* Strip neighbours of plain added tokens, in order, as tokenize() does. */
    for (size_t i = 0; i < n_seg; i++) {
        const tok_special *sp = tok_special_exact(t, text + seg[i].off, seg[i].len);
        if (!sp || !sp->strip) continue;
        if (i + 1 < n_seg && seg[i + 1].len) tok_seg_lstrip(text, &seg[i + 1]);
        if (i > 0 && seg[i - 1].len) tok_seg_rstrip(text, &seg[i - 1]);
    }
    lisa_status st = LISA_OK;
    for (size_t i = 0; i < n_seg && st == LISA_OK; i++) {
        if (seg[i].len == 0) continue;
        const tok_special *sp = tok_special_exact(t, text + seg[i].off, seg[i].len);
        if (sp) {
            if (!tok_ids_push(out, sp->id))
                st = lisa_error_set(LISA_ERR_NOMEM, "out of memory while tokenizing");
        } else {
            st = tok_sp_encode(t, text + seg[i].off, seg[i].len, out);
        }
    }
    free(seg);
    return st;
}

lisa_status lisa_tokenizer_encode(const lisa_tokenizer *tok, const char *text, size_t len,
                                  int add_bos, int32_t **ids, size_t *n_ids) {
    if (!tok || !ids || !n_ids || (!text && len))
        return lisa_error_set(LISA_ERR_ARG, "lisa_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (add_bos && tok->bos_id < 0)
        return lisa_error_set(LISA_ERR_ARG, "this tokenizer has no BOS piece");
    tok_ids out = {0};
    lisa_status st = LISA_OK;
    if (add_bos && !tok_ids_push(&out, tok->bos_id))
        st = lisa_error_set(LISA_ERR_NOMEM, "out of memory while tokenizing");
    if (st == LISA_OK)
        st = tok->added_mode ? tok_added_encode(tok, text, len, &out)
                             : tok_sp_encode(tok, text, len, &out);
    if (st == LISA_OK && !out.p && !(out.p = malloc(sizeof *out.p))) /* empty result */
        st = lisa_error_set(LISA_ERR_NOMEM, "out of memory while tokenizing");
    if (st != LISA_OK) {
        free(out.p);
        return st;
    }
    *ids = out.p;
    *n_ids = out.n;
    return LISA_OK;
}

/* ------------------------------------------------------------------ */
/* decoding (SentencePieceProcessor::Decode)                             */

/* Appends a run of byte-piece bytes: valid UTF-8 characters as they are,
 * each malformed byte as U+FFFD. */
static int tok_flush_bytes(tok_buf *out, const unsigned char *b, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t l = tok_utf8_valid_len(b + i, n - i, NULL);
        if (l) {
            if (!tok_buf_put(out, b + i, l)) return 0;
            i += l;
        } else {
            if (!tok_buf_put(out, "\xEF\xBF\xBD", 3)) return 0;
            i++;
        }
    }
    return 1;
}

lisa_status lisa_tokenizer_decode(const lisa_tokenizer *tok, const int32_t *ids, size_t n,
                                  char **text) {
    if (!tok || !text || (!ids && n))
        return lisa_error_set(LISA_ERR_ARG, "lisa_tokenizer_decode: NULL argument");
    *text = NULL;
    for (size_t i = 0; i < n; i++)
        if (!lisa_tokenizer_piece(tok, ids[i]))
            return lisa_error_set(LISA_ERR_ARG, "token id %d out of range (vocabulary %d)",
                                  (int)ids[i], tok->n_vocab);
    tok_buf out = {0}, bytes = {0};
    int is_bos_ws = 1, bos_ws_seen = 0, ok = tok_buf_put(&out, "", 0);
    for (size_t i = 0; i < n && ok; i++) {
        int32_t id = ids[i];
        if (id < tok->n_pieces && tok->type[id] == PIECE_BYTE) {
            unsigned char c = (unsigned char)tok->byte_of[id];
            ok = tok_buf_put(&bytes, &c, 1);
            continue;
        }
        ok = tok_flush_bytes(&out, (const unsigned char *)bytes.p, bytes.n);
        bytes.n = 0;
        if (bos_ws_seen || out.n) is_bos_ws = 0;
        bos_ws_seen = 0;
        if (!ok) break;
        if (id >= tok->n_pieces) { /* added token: its literal text */
            const char *s = tok->added_by_id[id - tok->n_pieces];
            ok = tok_buf_put(&out, s, strlen(s));
            continue;
        }
        if (tok->type[id] == PIECE_CONTROL) continue;
        if (tok->type[id] == PIECE_UNKNOWN) {
            ok = tok_buf_put(&out, tok->unk_surface, strlen(tok->unk_surface));
            continue;
        }
        const char *p = tok->piece[id];
        size_t len = tok->piece_len[id];
        if (is_bos_ws && (tok->add_dummy_prefix || tok->remove_extra_ws) && len >= 3 &&
            !memcmp(p, k_space_sym, 3)) {
            p += 3;
            len -= 3;
            bos_ws_seen = !tok->remove_extra_ws;
        }
        for (size_t k = 0; k < len && ok;) {
            if (len - k >= 3 && !memcmp(p + k, k_space_sym, 3)) {
                ok = tok_buf_put(&out, " ", 1);
                k += 3;
            } else {
                ok = tok_buf_put(&out, p + k, 1);
                k++;
            }
        }
    }
    if (ok) ok = tok_flush_bytes(&out, (const unsigned char *)bytes.p, bytes.n);
    free(bytes.p);
    if (!ok) {
        free(out.p);
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory while decoding");
    }
    *text = out.p;
    return LISA_OK;
}

/* ------------------------------------------------------------------ */
/* vocabulary queries                                                   */

int lisa_tokenizer_n_vocab(const lisa_tokenizer *tok) { return tok->n_vocab; }
int lisa_tokenizer_bos_id(const lisa_tokenizer *tok) { return tok->bos_id; }
int lisa_tokenizer_eos_id(const lisa_tokenizer *tok) { return tok->eos_id; }

int32_t lisa_tokenizer_piece_id(const lisa_tokenizer *tok, const char *piece) {
    if (!piece) return -1;
    size_t n = strlen(piece);
    for (int j = 0; j < tok->n_added; j++)
        if (!strcmp(tok->added_text[j], piece)) return tok->added_id[j];
    int32_t id = tok_map_find(tok, &tok->reserved, piece, n);
    return id >= 0 ? id : tok_map_find(tok, &tok->normal, piece, n);
}

const char *lisa_tokenizer_piece(const lisa_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= tok->n_vocab) return NULL;
    if (id < tok->n_pieces) return tok->piece[id];
    return tok->added_by_id[id - tok->n_pieces];
}

/* Appends s to the malloc'd string *out (NULL starts one); 0 on OOM. */
static int hf_append(char **out, size_t *len, const char *s) {
    size_t n = strlen(s);
    char *g = realloc(*out, *len + n + 1);
    if (!g) return 0;
    memcpy(g + *len, s, n + 1);
    *out = g;
    *len += n;
    return 1;
}

/* LlamaTokenizer.convert_tokens_to_string on a run of SentencePiece ids. */
static lisa_status hf_run_to_string(const lisa_tokenizer *tok, const int32_t *ids, size_t n,
                                    char **out, size_t *len) {
    size_t start = 0;
    int prev_special = 0;
    for (size_t i = 0; i <= n; i++) {
        int special = i < n && (ids[i] == tok->bos_id || ids[i] == tok->eos_id || ids[i] == tok->unk_id);
        if (i < n && !special) {
            prev_special = 0;
            continue;
        }
        char *part = NULL;
        LISA_TRY(lisa_tokenizer_decode(tok, ids + start, i - start, &part));
        int ok = 1;
        if (special && !prev_special && i != 0) ok = hf_append(out, len, " ");
        ok = ok && hf_append(out, len, part);
        if (special) ok = ok && hf_append(out, len, tok->piece[ids[i]]);
        free(part);
        if (!ok) return lisa_error_set(LISA_ERR_NOMEM, "tokenizer: out of memory");
        prev_special = special;
        start = i + 1;
    }
    return LISA_OK;
}

lisa_status lisa_tokenizer_decode_hf(const lisa_tokenizer *tok, const int32_t *ids, size_t n,
                                     char **text) {
    if (!tok || !text || (!ids && n))
        return lisa_error_set(LISA_ERR_ARG, "lisa_tokenizer_decode_hf: NULL argument");
    *text = NULL;
    for (size_t i = 0; i < n; i++)
        if (!lisa_tokenizer_piece(tok, ids[i]))
            return lisa_error_set(LISA_ERR_ARG, "token id %d out of range (vocabulary %d)",
                                  (int)ids[i], tok->n_vocab);
    char *out = NULL;
    size_t len = 0;
    int parts = 0;
    lisa_status st = hf_append(&out, &len, "") ? LISA_OK
                                                : lisa_error_set(LISA_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < n && st == LISA_OK;) {
        if (parts++ && !hf_append(&out, &len, " ")) {
            st = lisa_error_set(LISA_ERR_NOMEM, "tokenizer: out of memory");
            break;
        }
        if (ids[i] >= tok->n_pieces) { /* an added token: its literal text */
            if (!hf_append(&out, &len, lisa_tokenizer_piece(tok, ids[i])))
                st = lisa_error_set(LISA_ERR_NOMEM, "tokenizer: out of memory");
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && ids[j] < tok->n_pieces) j++;
        st = hf_run_to_string(tok, ids + i, j - i, &out, &len);
        i = j;
    }
    if (st != LISA_OK) {
        free(out);
        return st;
    }
    *text = out;
    return LISA_OK;
}
