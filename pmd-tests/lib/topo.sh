# Network-namespace topology for l4lbd end-to-end runs (sourced by scripts/demo; the
# pytest calls it through `bash -c`). Needs root, iproute2, ethtool, procps (sysctl).
#
#   client ns ${P}-client         root ns (l4lbd)            node ns ${P}-node
#   eth0 10.0.0.2/24  <-veth->  ${P}-wan    ${P}-lan  <-veth->  eth0 10.128.0.21/24
#   gw 10.0.0.1 (l4lbd wan)                                    gw 10.128.0.1 (l4lbd lan)
#                                                              cbr0 10.4.1.1/24, ip_forward
#                                     pods ${P}-pod-{a,b,c}: eth0 10.4.1.11/.12/.13 on cbr0
#
# The root-namespace ends carry no address and no IPv6, so the kernel sends nothing on
# them: every frame there comes from l4lbd (net_af_packet) or from a namespace. TX
# checksum offload is off on every veth end so no frame leaves with a partial checksum.
#
# topo_up PREFIX / topo_down PREFIX; PREFIX is at most 4 characters so that
# "${PREFIX}-wan" fits IFNAMSIZ. Both are idempotent; topo_down also undoes a half-made
# topology and ends the processes still running inside its namespaces.

TOPO_POD_SUFFIXES=(a b c)
TOPO_POD_IPS=(10.4.1.11 10.4.1.12 10.4.1.13)

topo__check_prefix() {
  local p=$1
  if [[ -z "$p" || ${#p} -gt 4 || ! "$p" =~ ^[a-z0-9]+$ ]]; then
    echo "topo: PREFIX must be 1-4 characters [a-z0-9], got '$p'" >&2
    return 1
  fi
}

topo__namespaces() {
  local p=$1 s
  echo "$p-client"
  echo "$p-node"
  for s in "${TOPO_POD_SUFFIXES[@]}"; do echo "$p-pod-$s"; done
}

# Runs a command, echoing it on failure so a broken step is easy to find.
topo__run() {
  if ! "$@"; then
    echo "topo: failed: $*" >&2
    return 1
  fi
}

# Quiet, forwarding-friendly defaults inside a namespace: lo up, no rp_filter, no IPv6
# chatter (router/neighbour solicitations, MLD) towards l4lbd.
topo__ns_defaults() {
  local ns=$1
  topo__run ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.default.rp_filter=0 net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1 || return 1
  topo__run ip -n "$ns" link set lo up
}

# Brings up one veth end in namespace $1 ("" = root namespace), offloads off.
topo__veth_up() {
  local ns=$1 ifname=$2
  local -a in_ns=()
  [[ -n "$ns" ]] && in_ns=(ip netns exec "$ns")
  # tx off also turns off TSO/GSO-partial: frames on the wire carry full checksums.
  topo__run "${in_ns[@]}" ethtool -K "$ifname" tx off >/dev/null || return 1
  if [[ -n "$ns" ]]; then
    topo__run ip netns exec "$ns" sysctl -qw "net.ipv4.conf.$ifname.rp_filter=0" || return 1
    topo__run ip -n "$ns" link set "$ifname" up
  else
    topo__run ip link set "$ifname" up
  fi
}

# Root-namespace end for l4lbd: no IPv6 (so no link-local address, no DAD, no RS/MLD).
topo__root_end() {
  local ifname=$1
  topo__run sysctl -qw "net.ipv6.conf.$ifname.disable_ipv6=1" || return 1
  topo__veth_up "" "$ifname"
}

# The namespaces, and the node's pod bridge with the pods: everything but the links
# to l4lbd (veth for topo_up, TAPs attached later for topo_up_tap).
topo__build_node() {
  local p=$1
  local ns i s
  for ns in $(topo__namespaces "$p"); do
    ip netns add "$ns" || return 1
    topo__ns_defaults "$ns" || return 1
  done
  ip netns exec "$p-node" sysctl -qw net.ipv4.ip_forward=1 || return 1
  # node's pod bridge and the pods
  ip -n "$p-node" link add cbr0 type bridge || return 1
  ip -n "$p-node" addr add 10.4.1.1/24 dev cbr0 || return 1
  ip netns exec "$p-node" ethtool -K cbr0 tx off >/dev/null || return 1
  ip -n "$p-node" link set cbr0 up || return 1
  for i in "${!TOPO_POD_SUFFIXES[@]}"; do
    s=${TOPO_POD_SUFFIXES[$i]}
    ns="$p-pod-$s"
    ip -n "$p-node" link add "veth-$s" type veth peer name eth0 netns "$ns" || return 1
    ip -n "$p-node" link set "veth-$s" master cbr0 || return 1
    topo__veth_up "$p-node" "veth-$s" || return 1
    topo__veth_up "$ns" eth0 || return 1
    ip -n "$ns" addr add "${TOPO_POD_IPS[$i]}/24" dev eth0 || return 1
    ip -n "$ns" route add default via 10.4.1.1 || return 1
  done
}

topo__build() {
  local p=$1
  topo__build_node "$p" || return 1

  # client <-> l4lbd wan
  ip link add "$p-wan" type veth peer name eth0 netns "$p-client" || return 1
  topo__root_end "$p-wan" || return 1
  topo__veth_up "$p-client" eth0 || return 1
  ip -n "$p-client" addr add 10.0.0.2/24 dev eth0 || return 1
  ip -n "$p-client" route add default via 10.0.0.1 || return 1

  # node <-> l4lbd lan
  ip link add "$p-lan" type veth peer name eth0 netns "$p-node" || return 1
  topo__root_end "$p-lan" || return 1
  topo__veth_up "$p-node" eth0 || return 1
  ip -n "$p-node" addr add 10.128.0.21/24 dev eth0 || return 1
  ip -n "$p-node" route add default via 10.128.0.1 || return 1
}

topo_up() {
  local p=$1
  topo__check_prefix "$p" || return 1
  topo_down "$p" || return 1
  if ! topo__build "$p"; then
    echo "topo: topo_up $p failed; cleaning up" >&2
    topo_down "$p"
    return 1
  fi
}

topo_down() {
  local p=$1 ns pid ifname
  topo__check_prefix "$p" || return 1
  for ns in $(topo__namespaces "$p"); do
    [[ -e "/run/netns/$ns" ]] || continue
    # A process left inside keeps the namespace (and its veth ends) alive after
    # `ip netns del`; end the ones still there, each by its own pid.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]] && break
      sleep 0.1
    done
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  for ifname in "$p-wan" "$p-lan"; do
    if ip link show "$ifname" >/dev/null 2>&1; then
      ip link del "$ifname" 2>/dev/null || true
    fi
  done
  for ns in $(topo__namespaces "$p"); do
    if [[ -e "/run/netns/$ns" ]]; then
      echo "topo: namespace $ns is still there" >&2
      return 1
    fi
  done
  for ifname in "$p-wan" "$p-lan"; do
    if ip link show "$ifname" >/dev/null 2>&1; then
      echo "topo: link $ifname is still there" >&2
      return 1
    fi
  done
  return 0
}

# --- net_tap variant (pmd-tests/tap_test.py) -----------------------------------------
# With net_tap ports (net_tap0,iface=${P}-wan / net_tap1,iface=${P}-lan) l4lbd itself
# creates the two TAP interfaces, in the root namespace, when it starts. Hence:
#
#   topo_up_tap PREFIX      what topo_up builds, less the ${P}-wan/${P}-lan veth pairs
#   ... start l4lbd and wait for its "ready:" line ...
#   topo_attach_tap PREFIX  moves TAP ${P}-wan into ${P}-client and ${P}-lan into
#                           ${P}-node and sets each up there as the veth end eth0 would
#                           be (same addresses, routes, rp_filter); the PMD keeps its fd,
#                           which works whatever namespace the interface is in
#   topo_down PREFIX        unchanged: a TAP moved into a namespace goes with it, one
#                           still in the root namespace is deleted by name (and a TAP
#                           disappears anyway once l4lbd closes its fd)
#
# The kernel end of each TAP gets its own MAC (the TAP PMD gives the interface the
# port's MAC): client 02:00:0a:00:00:02, node 02:00:0a:80:00:15. TX checksum offload
# on the TAP ends is left as the kernel has it, unless TOPO_TAP_TX_OFF=1 (then
# `ethtool -K IF tx off`, as on the veths).

topo__build_tap() {
  topo__build_node "$1"
}

topo_up_tap() {
  local p=$1
  topo__check_prefix "$p" || return 1
  topo_down "$p" || return 1
  if ! topo__build_tap "$p"; then
    echo "topo: topo_up_tap $p failed; cleaning up" >&2
    topo_down "$p"
    return 1
  fi
}

# Moves the root-namespace TAP $1 into namespace $2 and configures it there.
topo__tap_into() {
  local ifname=$1 ns=$2 mac=$3 addr=$4 gw=$5
  if ! ip link show "$ifname" >/dev/null 2>&1; then
    echo "topo: TAP $ifname is not in the root namespace (is l4lbd running with it?)" >&2
    return 1
  fi
  topo__run ip link set "$ifname" netns "$ns" || return 1
  topo__run ip -n "$ns" link set "$ifname" address "$mac" || return 1
  if [[ "${TOPO_TAP_TX_OFF:-0}" == 1 ]]; then
    topo__run ip netns exec "$ns" ethtool -K "$ifname" tx off >/dev/null || return 1
  fi
  topo__run ip netns exec "$ns" sysctl -qw "net.ipv4.conf.$ifname.rp_filter=0" || return 1
  topo__run ip -n "$ns" link set "$ifname" up || return 1
  topo__run ip -n "$ns" addr add "$addr" dev "$ifname" || return 1
  topo__run ip -n "$ns" route add default via "$gw"
}

topo_attach_tap() {
  local p=$1
  topo__check_prefix "$p" || return 1
  topo__tap_into "$p-wan" "$p-client" 02:00:0a:00:00:02 10.0.0.2/24 10.0.0.1 || return 1
  topo__tap_into "$p-lan" "$p-node" 02:00:0a:80:00:15 10.128.0.21/24 10.128.0.1
}

# Allow `bash pmd-tests/lib/topo.sh up|down PREFIX` as well as sourcing.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -u
  case "${1:-}" in
    up) topo_up "${2:?PREFIX}" ;;
    down) topo_down "${2:?PREFIX}" ;;
    *)
      echo "usage: $0 up|down PREFIX" >&2
      exit 2
      ;;
  esac
fi
