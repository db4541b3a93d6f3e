# Fuzz harnesses (tests/fuzz/fuzz-*.c), one per input a stranger controls.
#
# Normal builds (gcc, Release and ASan): each harness links replay.c and is
# a ctest case `fuzz-<name>` (label fuzz) that runs it over its seed corpus
# tests/fuzz/corpus/<name>/ and its regression inputs tests/fuzz/regress/<name>/.
# With -DLISA_FUZZ_LIBFUZZER=ON (scripts/fuzz.sh: clang,
# -fsanitize=fuzzer-no-link,address,undefined everywhere) the same sources
# link libFuzzer's main instead; target fuzz-all builds them all.
option(LISA_FUZZ_LIBFUZZER "Link the fuzz harnesses with libFuzzer (clang)" OFF)

set(LISA_FUZZ_HARNESSES image safetensors st-index config tokenizer added-tokens manifest
    job-request job-result rle labelme cluster)
set(LISA_FUZZ_DIR ${CMAKE_SOURCE_DIR}/tests/fuzz)

add_library(lisa_fuzz_util STATIC ${LISA_FUZZ_DIR}/fuzz-util.c)
# The generated protobuf headers and the cluster's internal header are
# private to lisa_coordinator; the harnesses decode those messages too.
target_include_directories(lisa_fuzz_util PUBLIC ${LISA_FUZZ_DIR} ${LISA_PROTO_OUT}
  ${CMAKE_SOURCE_DIR}/coordinator/cluster)
target_link_libraries(lisa_fuzz_util PUBLIC lisa_coordinator PkgConfig::PROTOBUFC PkgConfig::CJSON
  MPI::MPI_C m)

set(LISA_FUZZ_TARGETS)
foreach(h ${LISA_FUZZ_HARNESSES})
  if(LISA_FUZZ_LIBFUZZER)
    add_executable(fuzz-${h} ${LISA_FUZZ_DIR}/fuzz-${h}.c)
    target_link_options(fuzz-${h} PRIVATE -fsanitize=fuzzer)
  else()
    add_executable(fuzz-${h} ${LISA_FUZZ_DIR}/fuzz-${h}.c ${LISA_FUZZ_DIR}/replay.c)
    add_test(NAME fuzz-${h} COMMAND fuzz-${h} ${LISA_FUZZ_DIR}/corpus/${h}
      ${LISA_FUZZ_DIR}/regress/${h})
    set_tests_properties(fuzz-${h} PROPERTIES LABELS fuzz)
  endif()
  target_link_libraries(fuzz-${h} PRIVATE lisa_fuzz_util)
  list(APPEND LISA_FUZZ_TARGETS fuzz-${h})
endforeach()
add_custom_target(fuzz-all DEPENDS ${LISA_FUZZ_TARGETS})

# Writes the seed corpora from the fixtures (tests/fuzz/make-corpus.sh).
if(NOT LISA_FUZZ_LIBFUZZER)
  add_executable(fuzz-make-corpus ${LISA_FUZZ_DIR}/make-corpus.c)
  target_link_libraries(fuzz-make-corpus PRIVATE lisa_fuzz_util)
endif()
