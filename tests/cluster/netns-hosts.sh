# netns-hosts.sh: N emulated hosts on one Linux machine for multi-host MPI
# tests, made of network namespaces. Sourced (POSIX sh; dash and bash both
# work) by a test run as root:
#
#     . tests/cluster/netns-hosts.sh
#     netns_available || exit $?        # 0, or 77 (skip) / 1 (fail), reason printed
#     TMP=$(mktemp -d)
#     trap 'netns_hosts_down; rm -rf "$TMP"' EXIT
#     trap 'exit 1' HUP INT TERM
#     netns_hosts_up 3 "$TMP" || exit 1
#     netns_exec 0 timeout 60 mpirun $(netns_mpirun_args) -np 3 --map-by node ./prog
#
# What "host i" (0 <= i < N) is:
#   - network namespace lisa-h<PID>-<i> (PID: the sourcing shell's $$, so
#     parallel ctest runs never share a name), with lo up and one veth,
#     eth0, addressed 10.213.0.<i+1>/24 (NETNS_NET overrides "10.213.0");
#   - the veth's other end sits in a switch namespace lisa-h<PID>-sw, on a
#     bridge. No interface, route or address is added to the root
#     namespace: the hosts reach each other and nothing else, and no
#     packet leaves the machine. IPv6 is off on these links;
#   - its own hostname h<i> (a UTS namespace per command entering it), so
#     MPI_Get_processor_name, Open MPI's session directories and log
#     prefixes tell the hosts apart;
#   - /etc/hosts replaced (bind mount in the command's private mount
#     namespace, nothing written under /etc) by DIR/hosts, which maps
#     h0..h<N-1> to their addresses, so the names resolve without DNS.
# The PID namespace, the file system and the CPUs stay shared.
#
# netns_hosts_up writes into DIR:
#   hostfile     "h<i> slots=S" per host, for mpirun --hostfile
#   netns-enter  `netns-enter HOST CMD [ARG...]`: runs CMD as host HOST
#                (h<i>, its address or plain i), argv kept as is
#   agent        the ssh stand-in for mpirun (plm_rsh_agent): `agent
#                [ssh-options] HOST COMMAND...` runs the words of COMMAND,
#                joined with spaces, with sh -c on HOST, as sshd would, in
#                a fresh environment as after an ssh login: PATH,
#                LD_LIBRARY_PATH, HOME, USER, LOGNAME, SHELL, LANG, LC_ALL,
#                OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM) and the names in
#                NETNS_AGENT_KEEP pass, anything else reaches remote ranks
#                only with mpirun -x (NETNS_AGENT_ENV=keep passes it all)
#   hosts        the /etc/hosts the hosts see
#
# mpirun runs inside host 0 (netns_exec 0 mpirun ...): the root namespace has
# no address on the hosts' subnet, so the orted daemons that mpirun starts on
# h1..h<N-1> through the agent could not call it back there. h0 is then
# mpirun's own node, as on a cluster's first node; the others get one orted
# each.
#
# Functions (all return non-zero on failure, with a message on stderr):
#   netns_available             0 if namespaces work here; otherwise prints
#                               why and returns 77 (skip) or 1 (fail), see
#                               there
#   netns_hosts_up N DIR [S]    N hosts (1..250), S slots each (default 1)
#   netns_hosts_down            kills what still runs in them, deletes the
#                               namespaces; idempotent, for the EXIT trap
#   netns_exec I CMD [ARG...]   CMD on host I (i, h<i> or its address)
#   netns_mpirun_args [ob1|ucx] the mpirun arguments for these hosts
#                               (default $NETNS_MPI_TRANSPORT, else ob1)
#   netns_mpirun [ARG...]       netns_exec 0 mpirun $(netns_mpirun_args) ARG...
#   netns_host_ns I, netns_host_ip I    namespace name, address of host I
#   netns_ifstat I IFACE FIELD  /sys/class/net/IFACE/statistics/FIELD on host I
#
# Variables set by netns_hosts_up: NETNS_PREFIX (lisa-h<PID>), NETNS_HOSTS (N),
# NETNS_DIR, NETNS_NET (10.213.0), NETNS_SUBNET (10.213.0.0/24), NETNS_IFACE
# (eth0). Shell variables and functions of this file start with netns_ / _nh_.

NETNS_NET=${NETNS_NET:-10.213.0}
NETNS_SUBNET=$NETNS_NET.0/24
NETNS_IFACE=eth0
NETNS_PREFIX=lisa-h$$
NETNS_HOSTS=0
NETNS_DIR=

_nh_err() {
    echo "netns-hosts: $*" >&2
}

# Whether `ip netns` works here: needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN),
# iproute2, util-linux (unshare, mount), veth and bridge links. When it does
# not, the reason goes to stderr and the result is
#   77 (skip) for a non-root user, 1 (fail) for root, because root on the
#      project's Debian 12 CI can do this and a skip there would hide a
#      broken test;
#   LISA_REQUIRE_NETNS=1 makes it 1 for everyone, LISA_REQUIRE_NETNS=0 makes
#      it 77 for everyone (root in a container without CAP_SYS_ADMIN).
netns_available() {
    if [ "${LISA_REQUIRE_NETNS:-}" = 1 ]; then _nh_no=1
    elif [ "${LISA_REQUIRE_NETNS:-}" = 0 ]; then _nh_no=77
    elif [ "$(id -u)" = 0 ]; then _nh_no=1
    else _nh_no=77
    fi
    if [ "$(id -u)" != 0 ]; then
        _nh_err "network namespaces need root (ip netns add, veth, bridge); running as uid $(id -u)"
        return $_nh_no
    fi
    for _nh_c in ip unshare mount hostname; do
        if ! command -v $_nh_c >/dev/null 2>&1; then
            _nh_unavailable "$_nh_c not found (Debian: iproute2, util-linux, hostname)"
            return $_nh_no
        fi
    done
    _nh_p=lisa-probe$$
    if ! _nh_out=$(ip netns add $_nh_p 2>&1); then
        _nh_unavailable "ip netns add fails: $_nh_out (no CAP_SYS_ADMIN? in a container, run it --privileged)"
        return $_nh_no
    fi
    _nh_why=
    if ! _nh_out=$(ip -n $_nh_p link add v0 type veth peer name v1 2>&1); then
        _nh_why="veth link: $_nh_out"
    elif ! _nh_out=$(ip -n $_nh_p link add b0 type bridge 2>&1); then
        _nh_why="bridge link: $_nh_out"
    elif ! _nh_out=$(ip netns exec $_nh_p unshare --uts sh -c \
            'hostname lisa-probe && mount --bind /etc/hosts /etc/hosts' 2>&1); then
        _nh_why="own hostname and /etc/hosts inside a namespace: $_nh_out"
    fi
    ip netns delete $_nh_p 2>/dev/null || :
    if [ -n "$_nh_why" ]; then
        _nh_unavailable "unusable: $_nh_why"
        return $_nh_no
    fi
    return 0
}

# The message for a failure of netns_available; for root, how to skip.
_nh_unavailable() {
    _nh_err "$*"
    [ "$_nh_no" != 1 ] || [ "$(id -u)" != 0 ] ||
        _nh_err "(a failure, not a skip, for root; LISA_REQUIRE_NETNS=0 makes it a skip)"
}

netns_host_ns() {
    echo "$NETNS_PREFIX-$1"
}

netns_host_ip() {
    echo "$NETNS_NET.$(($1 + 1))"
}

# Kills the processes inside namespace $1 (TERM, then KILL after 2 s) and
# deletes it. The caller's own shell is never among them (it is in the root
# namespace).
_nh_ns_remove() {
    _nh_pids=$(ip netns pids "$1" 2>/dev/null | grep -vx "$$") || :
    if [ -n "$_nh_pids" ]; then
        # shellcheck disable=SC2086  # one pid a word
        kill -TERM $_nh_pids 2>/dev/null || :
        _nh_t=0
        while [ $_nh_t -lt 20 ] && [ -n "$(ip netns pids "$1" 2>/dev/null)" ]; do
            sleep 0.1
            _nh_t=$((_nh_t + 1))
        done
        _nh_pids=$(ip netns pids "$1" 2>/dev/null | grep -vx "$$") || :
        # shellcheck disable=SC2086
        [ -z "$_nh_pids" ] || kill -KILL $_nh_pids 2>/dev/null || :
    fi
    ip netns delete "$1" 2>/dev/null || :
}

# Namespaces lisa-h<PID>-* left by a run whose shell no longer exists (killed
# with SIGKILL, e.g. by a ctest timeout, so its EXIT trap never ran).
_nh_remove_stale() {
    for _nh_ns in $(ip netns list 2>/dev/null | sed -n 's/^\(lisa-h[0-9][0-9]*-[a-z0-9]*\).*/\1/p'); do
        _nh_pid=${_nh_ns#lisa-h}
        _nh_pid=${_nh_pid%%-*}
        if [ "$_nh_pid" != "$$" ] && ! kill -0 "$_nh_pid" 2>/dev/null; then
            _nh_ns_remove "$_nh_ns"
        fi
    done
}

# Runs "$@" in namespace $1 (setup commands; no hostname, no hosts file).
_nh_in() {
    _nh_ns=$1
    shift
    ip netns exec "$_nh_ns" "$@"
}

# Best effort: IPv6 off in a namespace for links created after it, so no
# router solicitations or DAD packets land in the interface counters.
_nh_no_ipv6() {
    _nh_in "$1" sh -c 'for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 \
        /proc/sys/net/ipv6/conf/default/disable_ipv6; do
        [ -w "$f" ] && echo 1 > "$f"; done; true' 2>/dev/null || :
}

netns_hosts_up() {
    if [ $# -lt 2 ]; then
        _nh_err "usage: netns_hosts_up N DIR [SLOTS]"
        return 2
    fi
    _nh_n=$1
    _nh_dir=$2
    _nh_slots=${3:-1}
    case $_nh_n in ''|*[!0-9]*) _nh_err "N must be a number: '$_nh_n'"; return 2 ;; esac
    case $_nh_slots in ''|*[!0-9]*) _nh_err "SLOTS must be a number: '$_nh_slots'"; return 2 ;; esac
    if [ "$_nh_n" -lt 1 ] || [ "$_nh_n" -gt 250 ]; then
        _nh_err "N must be 1..250: $_nh_n"
        return 2
    fi
    if [ ! -d "$_nh_dir" ]; then
        _nh_err "no directory $_nh_dir"
        return 2
    fi
    # netns_mpirun_args is word-split by its callers.
    case $_nh_dir in *[[:space:]]*) _nh_err "DIR must not contain white space: '$_nh_dir'"; return 2 ;; esac
    _nh_dir=$(cd "$_nh_dir" && pwd) || return 2
    if [ "$NETNS_HOSTS" -gt 0 ] || ip netns list | grep -q "^$NETNS_PREFIX-"; then
        _nh_err "hosts $NETNS_PREFIX-* are already up (call netns_hosts_down first)"
        return 1
    fi
    _nh_remove_stale
    NETNS_DIR=$_nh_dir
    NETNS_SUBNET=$NETNS_NET.0/24
    NETNS_HOSTS=$_nh_n
    _nh_sw=$NETNS_PREFIX-sw
    if ! { ip netns add "$_nh_sw" && _nh_no_ipv6 "$_nh_sw" &&
           ip -n "$_nh_sw" link set lo up &&
           ip -n "$_nh_sw" link add br0 type bridge &&
           ip -n "$_nh_sw" link set br0 up; }; then
        _nh_err "cannot make the switch namespace $_nh_sw"
        netns_hosts_down
        return 1
    fi
    _nh_i=0
    while [ $_nh_i -lt "$_nh_n" ]; do
        _nh_ns=$NETNS_PREFIX-$_nh_i
        # The veth is made inside the host namespace with its peer put
        # straight into the switch: no name ever appears in the root
        # namespace, so parallel runs cannot clash.
        if ! { ip netns add "$_nh_ns" && _nh_no_ipv6 "$_nh_ns" &&
               ip -n "$_nh_ns" link set lo up &&
               ip -n "$_nh_ns" link add "$NETNS_IFACE" type veth peer name "p$_nh_i" netns "$_nh_sw" &&
               ip -n "$_nh_sw" link set "p$_nh_i" master br0 &&
               ip -n "$_nh_sw" link set "p$_nh_i" up &&
               ip -n "$_nh_ns" addr add "$(netns_host_ip $_nh_i)/24" dev "$NETNS_IFACE" &&
               ip -n "$_nh_ns" link set "$NETNS_IFACE" up; }; then
            _nh_err "cannot make host $_nh_i ($_nh_ns)"
            netns_hosts_down
            return 1
        fi
        _nh_i=$((_nh_i + 1))
    done

    {
        echo "127.0.0.1 localhost"
        _nh_i=0
        while [ $_nh_i -lt "$_nh_n" ]; do
            echo "$(netns_host_ip $_nh_i) h$_nh_i"
            _nh_i=$((_nh_i + 1))
        done
    } > "$_nh_dir/hosts"
    _nh_i=0
    : > "$_nh_dir/hostfile"
    while [ $_nh_i -lt "$_nh_n" ]; do
        echo "h$_nh_i slots=$_nh_slots" >> "$_nh_dir/hostfile"
        _nh_i=$((_nh_i + 1))
    done

    # The two scripts: constants first, then a quoted body.
    {
        echo '#!/bin/sh'
        echo "# netns-enter HOST CMD [ARG...]: CMD as host HOST (h<i>, its address or i)"
        echo "# of the emulated hosts $NETNS_PREFIX-0..$((_nh_n - 1)) (tests/cluster/netns-hosts.sh)."
        echo "prefix=$NETNS_PREFIX n=$_nh_n net=$NETNS_NET hosts=$_nh_dir/hosts"
        cat <<'EOF'
if [ $# -lt 2 ]; then
    echo "usage: netns-enter HOST CMD [ARG...]" >&2
    exit 255
fi
case $1 in
    h[0-9]*) i=${1#h} ;;
    "$net".*) i=${1##*.}; case $i in ''|*[!0-9]*) ;; *) i=$((i - 1)) ;; esac ;;
    *) i=$1 ;;
esac
case $i in
    ''|*[!0-9]*) echo "netns-enter: unknown host '$1' (hosts h0..h$((n - 1)))" >&2; exit 255 ;;
esac
if [ "$i" -ge "$n" ]; then
    echo "netns-enter: unknown host '$1' (hosts h0..h$((n - 1)))" >&2
    exit 255
fi
shift
# A new UTS namespace for the hostname; ip netns exec already gave the
# command a mount namespace of its own (a slave of the root one), so the bind
# mount stays inside it.
exec ip netns exec "$prefix-$i" unshare --uts sh -c \
    'hostname "$0" && mount --bind "$1" /etc/hosts && shift && exec "$@"' \
    "h$i" "$hosts" "$@"
EOF
    } > "$_nh_dir/netns-enter"
    {
        echo '#!/bin/sh'
        cat <<'EOF'
# ssh stand-in for mpirun (--mca plm_rsh_agent): agent [ssh-options] HOST
# COMMAND... runs COMMAND's words, joined by spaces, with sh -c as host HOST,
# like sshd does. Like a login over ssh, the command gets a fresh
# environment: only PATH, LD_LIBRARY_PATH, HOME, USER, LOGNAME, SHELL, LANG,
# LC_ALL, OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM) and the names listed in
# NETNS_AGENT_KEEP pass; NETNS_AGENT_ENV=keep passes everything.
EOF
        echo "enter=$_nh_dir/netns-enter"
        cat <<'EOF'
while [ $# -gt 0 ]; do
    case $1 in
        -[BbcDEeFIiJLlmOopQRSWw]) shift 2 ;;  # ssh options with an argument
        --) shift; break ;;
        -?*) shift ;;
        *) break ;;
    esac
done
if [ $# -lt 2 ]; then
    echo "agent: usage: agent [ssh-options] HOST COMMAND..." >&2
    exit 255
fi
host=$1
shift
cmd=$*
if [ "${NETNS_AGENT_ENV:-}" = keep ]; then
    exec "$enter" "$host" sh -c "$cmd"
fi
set --
for v in PATH LD_LIBRARY_PATH HOME USER LOGNAME SHELL LANG LC_ALL \
         OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM ${NETNS_AGENT_KEEP:-}; do
    case $v in ''|[0-9]*|*[!A-Za-z0-9_]*) continue ;; esac
    eval "isset=\${$v+1} val=\${$v-}"
    [ -z "$isset" ] || set -- "$@" "$v=$val"
done
exec env -i "$@" "$enter" "$host" sh -c "$cmd"
EOF
    } > "$_nh_dir/agent"
    chmod +x "$_nh_dir/netns-enter" "$_nh_dir/agent"
    return 0
}

netns_hosts_down() {
    # Every namespace of this prefix, also those a failed netns_hosts_up
    # left; a veth goes with either of its ends' namespaces.
    for _nh_ns in $(ip netns list 2>/dev/null | sed -n "s/^\($NETNS_PREFIX-[a-z0-9]*\).*/\1/p"); do
        _nh_ns_remove "$_nh_ns"
    done
    NETNS_HOSTS=0
    return 0
}

netns_exec() {
    if [ "$NETNS_HOSTS" -lt 1 ]; then
        _nh_err "netns_exec: no hosts are up"
        return 1
    fi
    if [ $# -lt 2 ]; then
        _nh_err "usage: netns_exec HOST CMD [ARG...]"
        return 2
    fi
    "$NETNS_DIR/netns-enter" "$@"
}

# The mpirun arguments for the hosts, on one line (word-split it):
#   --hostfile DIR/hostfile --mca plm_rsh_agent DIR/agent: launch the
#     daemons through the agent, i.e. into the namespaces;
#   --mca oob_tcp_if_include SUBNET: the runtime's own traffic (daemon
#     wire-up, I/O forwarding) on the veths;
#   --bind-to none: every "host" is the same machine, so each daemon would
#     otherwise bind its rank to the same first core;
#   ob1 (default): --mca pml ob1 --mca btl tcp,vader,self --mca
#     btl_tcp_if_include SUBNET: point-to-point over TCP on the veths, shared
#     memory only between ranks on one host. Forcing ob1 keeps a machine
#     with an InfiniBand card (not confined by network namespaces) from
#     taking pml ucx over it;
#   ucx: --mca pml ucx --mca pml_ucx_tls any --mca pml_ucx_devices any
#     -x UCX_NET_DEVICES=eth0: UCX's TCP transport on the veths (Open MPI
#     4.1 otherwise drops pml ucx when there is no Mellanox device);
#   --allow-run-as-root when root (the same as OMPI_ALLOW_RUN_AS_ROOT=1
#     OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1).
# shellcheck disable=SC2120  # callers may pass the transport
netns_mpirun_args() {
    if [ "$NETNS_HOSTS" -lt 1 ]; then
        _nh_err "netns_mpirun_args: no hosts are up"
        return 1
    fi
    _nh_tr=${1:-${NETNS_MPI_TRANSPORT:-ob1}}
    _nh_a="--hostfile $NETNS_DIR/hostfile --mca plm_rsh_agent $NETNS_DIR/agent"
    _nh_a="$_nh_a --mca oob_tcp_if_include $NETNS_SUBNET --bind-to none"
    case $_nh_tr in
        ob1) _nh_a="$_nh_a --mca pml ob1 --mca btl tcp,vader,self --mca btl_tcp_if_include $NETNS_SUBNET" ;;
        ucx) _nh_a="$_nh_a --mca pml ucx --mca pml_ucx_tls any --mca pml_ucx_devices any -x UCX_NET_DEVICES=$NETNS_IFACE" ;;
        *) _nh_err "netns_mpirun_args: transport must be ob1 or ucx: '$_nh_tr'"; return 2 ;;
    esac
    [ "$(id -u)" != 0 ] || _nh_a="$_nh_a --allow-run-as-root"
    echo "$_nh_a"
}

netns_mpirun() {
    # shellcheck disable=SC2119
    _nh_a=$(netns_mpirun_args) || return $?
    # shellcheck disable=SC2086  # the arguments are meant to be split
    netns_exec 0 "${NETNS_MPIRUN:-mpirun}" $_nh_a "$@"
}

netns_ifstat() {
    netns_exec "$1" cat "/sys/class/net/$2/statistics/$3"
}
