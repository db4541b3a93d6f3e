# mpi-env.sh: sourced by the cluster tests: what Open MPI needs to run
# oversubscribed jobs as root on a small machine, set for the test only:
# root allowed (CI runs as root), no binding (ranks outnumber cores), TCP
# and shared memory on loopback, passive OpenMP waits, leaks inside MPI's
# own libraries not counted against us under LeakSanitizer.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
# mpirun's SIGTERM-to-SIGKILL grace after a rank died (default 1 s): the
# coordinator writes every unfinished request as failed in it, which a
# loaded 2-core machine under ASan did not always manage in 1 s (mpirun
# waits the whole grace, so a failed job ends that much later).
export OMPI_MCA_odls_base_sigkill_timeout=3
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "${HERE:-.}/x")" && pwd)/lsan-mpi.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
MPI_ARGS="--oversubscribe --bind-to none"
# Under ASan (ctest's ASAN_OPTIONS set) the ranks must not abort at exit on
# the leaks LeakSanitizer finds in Open MPI's components: they are
# dlclose'd before the report, so their frames are "<unknown module>" and
# no suppression can name them. The ranks report leaks without failing
# (exitcode=0) and mpi_leaks_ours fails the test on any leak allocated
# directly by our code (the first frame after the allocator a symbolized
# function in this repo's sources).
if [ -n "${ASAN_OPTIONS:-}" ]; then
    export ASAN_OPTIONS="$ASAN_OPTIONS:abort_on_error=0"
    export LSAN_OPTIONS="$LSAN_OPTIONS:exitcode=0"
fi
LISA_SRC=$(cd "$(dirname "${HERE:-.}/x")/../.." && pwd)
# mpi_leaks_ours LOG...: prints our leaks' first frames; status 1 if any.
mpi_leaks_ours() {
    awk -v src="$LISA_SRC/" '
        /^(Direct|Indirect) leak of/ { want = 1; next }
        want && /^ *#1 / {
            i = index($0, " " src)
            if ($0 ~ / in [^ ]+ / && i && substr($0, i + 1 + length(src)) ~ /^(coordinator|shard|kernels)\//) {
                print FILENAME ": " $0
                bad = 1
            }
            want = 0
        }
        END { exit bad }' "$@"
}
