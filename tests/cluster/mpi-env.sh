# mpi-env.sh: sourced by the cluster tests: what Open MPI needs to run
# oversubscribed jobs as root on a small machine, set for the test only:
# root allowed (CI runs as root), no binding (ranks outnumber cores), TCP
# and shared memory on loopback, passive OpenMP waits, leaks inside MPI's
# own libraries not counted against us under LeakSanitizer.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "${HERE:-.}/x")" && pwd)/lsan-mpi.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
MPI_ARGS="--oversubscribe --bind-to none"
