/* pb-check.h: checks on an unpacked protobuf-c message for what
 * protobuf-c 1.4 lets through but the protobuf wire format forbids (see
 * pb-check.c). Every decoder of a stranger's message (the job codec, the
 * cluster's ranks) runs it after protobuf_c_message_unpack. */
#ifndef LISA_PB_CHECK_H
#define LISA_PB_CHECK_H

#include <protobuf-c/protobuf-c.h>

/* The full name of the message type (m's or one nested in it, at any
 * depth) that holds a field numbered 0; NULL when there is none. m is a
 * message protobuf_c_message_unpack returned. */
const char *lisa_pb_field_zero(const ProtobufCMessage *m);

#endif
