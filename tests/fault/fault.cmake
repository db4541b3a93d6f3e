# tests/fault/fault.cmake: fault injection (kernels/fault.h) and its sweeps.
#
# -DLISA_FAULT_INJECTION=ON (the default under LISA_SANITIZE, so the ASan
# build, where leaks are checked, always has it) turns on kernels/fault.c's
# counters and links every program with -Wl,--wrap for the allocation and
# file I/O calls wrapped in tests/fault/fault-wrap.c. Without it the
# injection points cost one call each and never fire, and only the sweeps
# that need no injection (output disk full) are added.
#
# LISA_FAULT_SWEEP: "ci" (default) bounds each sweep to about
# LISA_FAULT_POINTS N per kind, evenly strided with the first and last N
# always (CI's time budget); "full" sweeps every N (see docs/reliability.md
# for the figures of a full run).
option(LISA_FAULT_INJECTION "Compile fault injection points into this build (tests)" ${LISA_SANITIZE})
if(LISA_FAULT_INJECTION)
  set_property(SOURCE ${CMAKE_SOURCE_DIR}/kernels/fault.c APPEND PROPERTY
    COMPILE_DEFINITIONS LISA_FAULT_ENABLED=1)
  target_sources(lisa_kernels PRIVATE ${CMAKE_SOURCE_DIR}/tests/fault/fault-wrap.c)
  set(LISA_FAULT_WRAPPED malloc calloc realloc strdup strndup aligned_alloc
      fopen fopen64 fread fwrite fgets getline open read write mmap)
  set(LISA_FAULT_WRAP_FLAGS)
  foreach(sym ${LISA_FAULT_WRAPPED})
    list(APPEND LISA_FAULT_WRAP_FLAGS "LINKER:--wrap=${sym}")
  endforeach()
  target_link_options(lisa_kernels INTERFACE ${LISA_FAULT_WRAP_FLAGS})
endif()
message(STATUS "LISA: fault injection ${LISA_FAULT_INJECTION}")

if(LISA_FAULT_INJECTION)
  add_executable(fault-engine ${CMAKE_SOURCE_DIR}/tests/fault/fault-engine.c)
  target_include_directories(fault-engine PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_link_libraries(fault-engine PRIVATE lisa_coordinator)
  add_test(NAME fault-load COMMAND fault-engine ${LISA_FIXTURES} load)
  add_test(NAME fault-request COMMAND fault-engine ${LISA_FIXTURES} request)
  add_executable(fault-worker ${CMAKE_SOURCE_DIR}/tests/fault/fault-worker.c)
  target_include_directories(fault-worker PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_link_libraries(fault-worker PRIVATE lisa_coordinator)
  add_test(NAME fault-worker COMMAND sh ${CMAKE_SOURCE_DIR}/tests/fault/fault-worker.sh
    $<TARGET_FILE:fault-worker> ${LISA_FIXTURES})
  add_test(NAME fault-env COMMAND sh ${CMAKE_SOURCE_DIR}/tests/fault/fault-env.sh
    $<TARGET_FILE:lisa> ${LISA_FIXTURES})
  set_tests_properties(fault-load fault-request fault-worker fault-env PROPERTIES LABELS fault
    SKIP_RETURN_CODE 77)
  set_tests_properties(fault-worker PROPERTIES RUN_SERIAL ON)
  set(LISA_FAULT_SWEEP ci CACHE STRING "Fault sweeps: ci (bounded) or full (every N)")
  if(NOT LISA_FAULT_SWEEP STREQUAL "full")
    set_tests_properties(fault-load PROPERTIES ENVIRONMENT "LISA_FAULT_POINTS=60")
    set_tests_properties(fault-request PROPERTIES ENVIRONMENT "LISA_FAULT_POINTS=15")
    set_tests_properties(fault-worker PROPERTIES ENVIRONMENT "LISA_FAULT_POINTS=6")
  endif()
endif()
# Output disk full (RLIMIT_FSIZE): every build.
add_test(NAME fault-disk COMMAND sh ${CMAKE_SOURCE_DIR}/tests/fault/fault-disk.sh
  $<TARGET_FILE:lisa> ${LISA_FIXTURES})
set_tests_properties(fault-disk PROPERTIES LABELS "fault;queue" RUN_SERIAL ON)
