#!/bin/sh
# netns-selftest.sh: checks the emulated hosts of netns-hosts.sh with a real
# Open MPI job before any `lisa cluster` test relies on them.
# Usage: sh netns-selftest.sh [MPICC [MPIRUN]]   (defaults: mpicc, mpirun)
# Exit: 0 pass, 1 fail, 77 skip (only where namespaces cannot be made and
# that is allowed: not root, or LISA_REQUIRE_NETNS=0; see netns-hosts.sh).
# KEEP=1 leaves the temporary folder (mpirun logs, each rank's ss output).
#
# Brings up 3 hosts and compiles a small MPI program; then, once with pml
# ob1 + btl tcp and once with pml ucx over UCX's TCP transport, runs it as
# `mpirun -np 3 --map-by node` and checks that
#   - 3 ranks ran, rank r on host h<r> in its own network namespace, seeing
#     only lo and its veth address;
#   - an MPI_Allreduce and RING_ITERS rounds of a 1 MiB MPI_Send/MPI_Recv
#     ring completed with the right bytes;
#   - the ring went over the veths: each rank had established TCP
#     connections (ss, taken by the rank itself) from its own veth address
#     to both ring neighbours' addresses, each host's eth0 sent and received
#     at least RING_ITERS MiB during the run, and no host's lo carried 1 MiB.
# The hosts have no route out of their subnet (checked too), so no traffic
# leaves the machine.
set -u
MPICC=${1:-mpicc}
MPIRUN=${2:-mpirun}
RING_ITERS=4
MIB=1048576
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/netns-hosts.sh"

netns_available || exit $?
for tool in "$MPICC" "$MPIRUN" timeout ss; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "FAIL: $tool not found (Debian: openmpi-bin libopenmpi-dev iproute2 coreutils)" >&2
        exit 1
    fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lisa-netns.XXXXXX") || exit 1
trap 'netns_hosts_down; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
trap 'exit 1' HUP INT TERM
fails=0
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
start=$(date +%s)

cat > "$TMP/netns-mpi.c" <<'EOF'
/* Each rank: one line "rank R size N host H pid P netns NS addrs A,B" (IPv4
 * addresses of its interfaces), an Allreduce of the ranks, RING_ITERS
 * rounds of a 1 MiB ring checked byte by byte, its established TCP sockets
 * into DIR/ss.R, then "rank R ring ok". */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <mpi.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MSG (1 << 20)

int main(int argc, char **argv) {
    int r, n, len, sum = 0, bad = 0;
    char host[MPI_MAX_PROCESSOR_NAME], ns[128] = "?", addrs[512] = "", cmd[4200];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    MPI_Get_processor_name(host, &len);
    ssize_t k = readlink("/proc/self/ns/net", ns, sizeof ns - 1);
    if (k > 0) ns[k] = 0;
    struct ifaddrs *ifs, *i;
    if (getifaddrs(&ifs) == 0) {
        for (i = ifs; i; i = i->ifa_next) {
            if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
            char a[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, a, sizeof a);
            if (strlen(addrs) + strlen(a) + 2 < sizeof addrs)
                strcat(strcat(addrs, addrs[0] ? "," : ""), a);
        }
        freeifaddrs(ifs);
    }
    printf("rank %d size %d host %s pid %d netns %s addrs %s\n", r, n, host, (int)getpid(), ns, addrs);
    fflush(stdout);

    MPI_Allreduce(&r, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (sum != n * (n - 1) / 2) bad = 1;
    unsigned char *out = malloc(MSG), *in = malloc(MSG);
    int next = (r + 1) % n, prev = (r + n - 1) % n, iters = atoi(argv[2]);
    for (int it = 0; it < iters && n > 1; it++) {
        for (int j = 0; j < MSG; j++) out[j] = (unsigned char)(r * 31 + it * 7 + j);
        if (r == 0) {
            MPI_Send(out, MSG, MPI_BYTE, next, it, MPI_COMM_WORLD);
            MPI_Recv(in, MSG, MPI_BYTE, prev, it, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(in, MSG, MPI_BYTE, prev, it, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(out, MSG, MPI_BYTE, next, it, MPI_COMM_WORLD);
        }
        for (int j = 0; j < MSG; j++)
            if (in[j] != (unsigned char)(prev * 31 + it * 7 + j)) { bad = 1; break; }
    }
    /* All connections are up now; list this namespace's before any closes. */
    MPI_Barrier(MPI_COMM_WORLD);
    snprintf(cmd, sizeof cmd, "ss -tnpH state established > %s/ss.%d", argv[1], r);
    if (system(cmd) != 0) bad = 1;
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!bad) printf("rank %d ring ok\n", r);
    else printf("rank %d ring BAD (sum %d)\n", r, sum);
    free(out);
    free(in);
    MPI_Finalize();
    return bad;
}
EOF
if ! "$MPICC" -std=c11 -D_DEFAULT_SOURCE -O2 -o "$TMP/netns-mpi" "$TMP/netns-mpi.c" 2> "$TMP/cc.log"; then
    cat "$TMP/cc.log" >&2
    echo "FAIL: $MPICC could not build the test program" >&2
    exit 1
fi

netns_hosts_up 3 "$TMP" || exit 1

ns_of() { # the namespace inode as the kernel names it, e.g. net:[4026532239]
    netns_exec "$1" readlink /proc/self/ns/net
}
for h in 0 1 2; do
    routes=$(netns_exec $h ip -4 route show | awk '{ print $1, $2, $3 }')
    [ "$routes" = "$NETNS_SUBNET dev $NETNS_IFACE" ] || fail "h$h has routes other than its subnet: $routes"
    [ "$(netns_exec $h hostname)" = "h$h" ] || fail "h$h: hostname is '$(netns_exec $h hostname)'"
done
got=$(netns_exec 2 getent hosts h1 | awk '{ print $1, $2 }')
[ "$got" = "$(netns_host_ip 1) h1" ] || fail "h2 resolves h1 to '$got'"
[ "$(ns_of 0)" != "$(ns_of 1)" ] && [ "$(ns_of 1)" != "$(ns_of 2)" ] ||
    fail "the hosts do not have distinct namespaces"
[ "$(ns_of 0)" != "$(readlink /proc/self/ns/net)" ] || fail "h0 is the root namespace"

counters() { # "eth0_rx eth0_tx lo_rx lo_tx" of host $1
    echo "$(netns_ifstat "$1" "$NETNS_IFACE" rx_bytes) $(netns_ifstat "$1" "$NETNS_IFACE" tx_bytes)" \
         "$(netns_ifstat "$1" lo rx_bytes) $(netns_ifstat "$1" lo tx_bytes)"
}

run_transport() { # $1: ob1 | ucx
    tr=$1
    rm -f "$TMP"/ss.*
    for h in 0 1 2; do eval "before$h=\"\$(counters $h)\""; done
    t0=$(date +%s)
    # shellcheck disable=SC2046  # netns_mpirun_args is meant to be split
    netns_exec 0 timeout -k 5 40 "$MPIRUN" $(netns_mpirun_args "$tr") -np 3 --map-by node \
        "$TMP/netns-mpi" "$TMP" $RING_ITERS > "$TMP/run-$tr.log" 2>&1
    rc=$?
    t1=$(date +%s)
    for h in 0 1 2; do eval "after$h=\"\$(counters $h)\""; done
    if [ $rc -ne 0 ]; then
        sed "s/^/  [$tr] /" "$TMP/run-$tr.log" >&2
        fail "$tr: mpirun exited $rc"
        return
    fi
    [ "$(grep -c '^rank [0-9]* size 3 ' "$TMP/run-$tr.log")" = 3 ] ||
        fail "$tr: not 3 ranks of size 3: $(cat "$TMP/run-$tr.log")"
    nss=
    for r in 0 1 2; do
        line=$(grep "^rank $r size " "$TMP/run-$tr.log")
        ip=$(netns_host_ip $r)
        case $line in
            *" host h$r pid "*) ;;
            *) fail "$tr: rank $r not on h$r: $line" ;;
        esac
        rns=$(echo "$line" | sed -n 's/.* netns \([^ ]*\) .*/\1/p')
        [ "$rns" = "$(ns_of $r)" ] || fail "$tr: rank $r in namespace $rns, h$r is $(ns_of $r)"
        nss="$nss $rns"
        case $line in
            *" addrs 127.0.0.1,$ip") ;;
            *) fail "$tr: rank $r sees addresses other than lo and $ip: $line" ;;
        esac
        grep -qx "rank $r ring ok" "$TMP/run-$tr.log" || fail "$tr: rank $r did not finish the ring"
        # Its own sockets: ss lists "... LOCAL PEER users:(("netns-mpi",pid=P,fd=F))".
        pid=$(echo "$line" | sed -n 's/.* pid \([0-9]*\) .*/\1/p')
        for peer in $(((r + 1) % 3)) $(((r + 2) % 3)); do
            pip=$(netns_host_ip $peer)
            grep "pid=$pid," "$TMP/ss.$r" 2>/dev/null |
                awk -v l="$ip:" -v p="$pip:" 'index($3, l) == 1 && index($4, p) == 1 { f = 1 } END { exit !f }' ||
                fail "$tr: rank $r (pid $pid) has no TCP connection $ip -> $pip: $(cat "$TMP/ss.$r" 2>/dev/null)"
        done
    done
    [ "$(echo $nss | tr ' ' '\n' | sort -u | wc -l)" = 3 ] || fail "$tr: ranks share namespaces:$nss"
    for h in 0 1 2; do
        eval "set -- \$before$h \$after$h"
        erx=$(($5 - $1)) etx=$(($6 - $2)) lrx=$(($7 - $3)) ltx=$(($8 - $4))
        echo "$tr: h$h $NETNS_IFACE rx $erx tx $etx bytes, lo rx $lrx tx $ltx bytes"
        [ $erx -ge $((RING_ITERS * MIB)) ] && [ $etx -ge $((RING_ITERS * MIB)) ] ||
            fail "$tr: h$h $NETNS_IFACE moved less than the ring's $RING_ITERS MiB each way (rx $erx, tx $etx)"
        [ $lrx -lt $MIB ] && [ $ltx -lt $MIB ] ||
            fail "$tr: h$h lo moved 1 MiB or more (rx $lrx, tx $ltx)"
    done
    echo "$tr: mpirun took $((t1 - t0)) s"
}

run_transport ob1
run_transport ucx

echo "netns-selftest: $((fails)) failure(s), $(($(date +%s) - start)) s"
[ $fails -eq 0 ]
