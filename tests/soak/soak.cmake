# Soak (scripts/soak.sh, docs/reliability.md): its CI mode, 200 jobs through
# three `lisa worker` processes and a 3-rank `lisa cluster --redis` while
# the chaos loop kills them (kill -9), stops them past the lease, restarts
# Redis from its AOF and drops connections; every job accounted for by
# custom id, results equal to `lisa segment`'s. Release build only: under
# the sanitizers every engine runs several times slower and the run is
# lease waits more than code, which test-queue, the queue tests and
# cluster-queue already cover there.
if(NOT LISA_SANITIZE)
  add_test(NAME soak-ci COMMAND sh ${CMAKE_SOURCE_DIR}/scripts/soak.sh --ci
    --lisa $<TARGET_FILE:lisa> --fixtures ${LISA_FIXTURES})
  set_tests_properties(soak-ci PROPERTIES LABELS "queue;soak" RUN_SERIAL ON TIMEOUT 900)
endif()
# cluster-netfault (tests/cluster, globbed with the cluster tests): Release
# only, for the same reason (its time is keepalive and stall waits; about
# 70 s under ASan even with LISA_CLUSTER_QUICK's link cut alone); the
# sanitizer build's cluster tests cover the coordinator's code.
if(LISA_SANITIZE AND TEST cluster-netfault)
  set_tests_properties(cluster-netfault PROPERTIES DISABLED TRUE)
endif()
