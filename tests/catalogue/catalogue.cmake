# tests/catalogue/catalogue.cmake: the malformed-input catalogue (issue 12,
# item 5) and what it needs from the build.
#
# test-tokenizer edits the fixture tokenizer.model with protobuf-c to make
# models with one broken field, so it sees the generated SentencePiece code.
target_include_directories(test-tokenizer PRIVATE ${LISA_PROTO_OUT})
target_link_libraries(test-tokenizer PRIVATE PkgConfig::PROTOBUFC)
