/* pb-check.c: what protobuf-c's unpacker accepts but protobuf forbids.
 *
 * Field number 0 is invalid in protobuf. protobuf-c 1.4.1 refuses a tag
 * whose first byte says so (0x00..0x07) but not the same tag written as an
 * overlong varint (0x80 0x00): it keeps that field as an unknown field
 * numbered 0, packs it back in its short form and then refuses its own
 * output. A rank that forwards or re-packs such a message would send bytes
 * no one can read; Google's parsers refuse it however it is written, and so
 * do we, at any depth.
 *
 * Deliberately not here: what protobuf-c already refuses, and what the
 * fields mean (each reader checks its own). */
#include "pb-check.h"

#include <stddef.h>

const char *lisa_pb_field_zero(const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0) return d->name;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        size_t n = 1;
        ProtobufCMessage *const *sub = (ProtobufCMessage *const *)(base + f->offset);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)(base + f->quantifier_offset);
            sub = *(ProtobufCMessage *const *const *)(base + f->offset);
        }
        for (size_t k = 0; k < n; k++) {
            const char *bad = sub[k] ? lisa_pb_field_zero(sub[k]) : NULL;
            if (bad) return bad;
        }
    }
    return NULL;
}
