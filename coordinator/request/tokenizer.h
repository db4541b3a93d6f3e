/* tokenizer.h: LLaMA's SentencePiece BPE tokenizer, as LISA runs it.
 *
 * Loaded from `tokenizer.model` (a SentencePiece ModelProto, parsed with
 * protobuf-c from proto/sentencepiece_model.proto). Encoding follows the
 * sentencepiece library (BPE merges by piece score, `▁` dummy prefix,
 * whitespace escaped to `▁`, byte fallback `<0xNN>`). When added tokens are
 * loaded (added_tokens.json, e.g. LISA's `[SEG]`, `<im_start>`, `<im_end>`),
 * encoding follows transformers 4.31's slow LlamaTokenizer (legacy): added
 * tokens are split out first, whitespace around them is stripped, and each
 * remaining text chunk is encoded separately with its own dummy prefix.
 *
 * Deliberately not here: chat templates, `<image>` splicing, BOS policy per
 * chunk (the prompt builder owns those). */
#ifndef LISA_TOKENIZER_H
#define LISA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct lisa_tokenizer lisa_tokenizer;

/* Loads a tokenizer. `added_tokens_path` may be NULL (pure SentencePiece).
 * A corrupt or truncated model file is LISA_ERR_FORMAT naming the file, and so
 * is one whose fields do not hold together (the message names the piece index
 * or the trainer_spec field): pieces empty, not valid UTF-8, repeated, with a
 * non-finite score or an unknown type; byte pieces not <0xNN>; no unk piece or
 * one trainer_spec.unk_id does not name; bos_id/eos_id not CONTROL pieces. */
lisa_status lisa_tokenizer_load(lisa_tokenizer **out, const char *model_path,
                                const char *added_tokens_path);
/* lisa_tokenizer_load from memory: model[0..model_len) holds the
 * tokenizer.model bytes and added[0..added_len) the added_tokens.json text
 * (added NULL: pure SentencePiece); neither is retained. The paths only
 * name the files in messages. */
lisa_status lisa_tokenizer_load_memory(lisa_tokenizer **out, const char *model_path,
                                       const uint8_t *model, size_t model_len,
                                       const char *added_tokens_path, const char *added,
                                       size_t added_len);
void lisa_tokenizer_free(lisa_tokenizer *tok);

/* Encodes `len` bytes of UTF-8 text. `add_bos` prepends the BOS id. `*ids`
 * is malloc'd (caller frees), `*n_ids` its length. Invalid UTF-8 is never
 * rejected: as in sentencepiece, each malformed byte becomes U+FFFD before
 * merging. */
lisa_status lisa_tokenizer_encode(const lisa_tokenizer *tok, const char *text, size_t len,
                                  int add_bos, int32_t **ids, size_t *n_ids);

/* Decodes ids to UTF-8 text (malloc'd, NUL-terminated) as sentencepiece's
 * DecodeIds does: `▁` to space, the leading dummy-prefix space removed, byte
 * pieces reassembled; BOS/EOS/UNK control pieces produce no text. Added tokens
 * decode to their literal text. Out-of-range ids are LISA_ERR_ARG. */
lisa_status lisa_tokenizer_decode(const lisa_tokenizer *tok, const int32_t *ids, size_t n,
                                  char **text);

/* Decodes ids as transformers 4.31's slow LlamaTokenizer.decode does (what
 * LISA's chat.py prints, before its own whitespace clean-up): runs of
 * SentencePiece ids and added tokens become separate pieces of text joined
 * by single spaces; inside a run, BOS/EOS/UNK keep their literal text with a
 * space before them unless they follow another one or start the run
 * (convert_tokens_to_string). No clean-up of tokenization spaces (LLaMA's
 * default). `*text` malloc'd. */
lisa_status lisa_tokenizer_decode_hf(const lisa_tokenizer *tok, const int32_t *ids, size_t n,
                                     char **text);

/* Vocabulary size including added tokens. */
int lisa_tokenizer_n_vocab(const lisa_tokenizer *tok);
int lisa_tokenizer_bos_id(const lisa_tokenizer *tok);
int lisa_tokenizer_eos_id(const lisa_tokenizer *tok);
/* Id of a piece or added token by its exact text, -1 when absent. */
int32_t lisa_tokenizer_piece_id(const lisa_tokenizer *tok, const char *piece);
/* The text of one piece (sentencepiece form, with `▁`), NULL when out of range. */
const char *lisa_tokenizer_piece(const lisa_tokenizer *tok, int32_t id);

#endif
