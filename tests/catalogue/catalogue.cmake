# tests/catalogue/catalogue.cmake: the malformed-input catalogue (issue 12,
# item 5) and what it needs from the build.
#
# test-tokenizer edits the fixture tokenizer.model with protobuf-c to make
# models with one broken field, so it sees the generated SentencePiece code.
target_include_directories(test-tokenizer PRIVATE ${LISA_PROTO_OUT})
target_link_libraries(test-tokenizer PRIVATE PkgConfig::PROTOBUFC)

# catalogue-forge makes the catalogue's bad inputs with the formats' own
# code (protobuf-c for models and job messages, cJSON for JSON edits).
add_executable(catalogue-forge ${CMAKE_SOURCE_DIR}/tests/catalogue/catalogue-forge.c)
target_include_directories(catalogue-forge PRIVATE ${LISA_PROTO_OUT})
target_link_libraries(catalogue-forge PRIVATE lisa_coordinator PkgConfig::PROTOBUFC PkgConfig::CJSON)

# The catalogue itself (docs/malformed-inputs.md): every bad input through
# the real lisa commands, a real redis-server and worker for the messages.
# Under the sanitizers a report in any command's output fails it.
add_test(NAME catalogue COMMAND sh ${CMAKE_SOURCE_DIR}/tests/catalogue/catalogue.sh
  $<TARGET_FILE:lisa> ${LISA_FIXTURES})
set_tests_properties(catalogue PROPERTIES LABELS catalogue)
