/* fuzz-tokenizer.c: libFuzzer harness for tokenizer.model, the SentencePiece
 * ModelProto of a model directory (coordinator/request/tokenizer.h,
 * protobuf-c), loaded from memory with lisa_tokenizer_load_memory and then
 * used: encoding fixed texts, decoding every id.
 *
 * Invariants checked: a load fails with a message or gives a tokenizer
 * whose every id in 0..n_vocab has a piece, whose piece_id of that piece
 * names a piece of the same text, whose bos/eos are -1 or in range; texts
 * (ASCII, UTF-8, invalid UTF-8, whitespace runs, byte pieces) encode to
 * ids in range with BOS first when asked, and decode (both decoders) back
 * to a NUL-terminated string; decoding every single id works; an
 * out-of-range id is refused with LISA_ERR_ARG.
 *
 * Deliberately not here: the texts' ids against sentencepiece (the unit
 * tests compare with the library), piece UTF-8 validation (its own change). */
#include <string.h>

#include "fuzz-util.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lisa_tokenizer *t = NULL;
    fuzz_error_clear();
    lisa_status st = lisa_tokenizer_load_memory(&t, "fuzz/tokenizer.model", data, size, NULL, NULL, 0);
    FUZZ_CHECK_ERROR(st);
    if (st != LISA_OK) {
        FUZZ_CHECK(t == NULL, "a failed load returned a tokenizer");
        return 0;
    }
    fuzz_tokenizer_check(t);
    lisa_tokenizer_free(t);
    return 0;
}
