#!/bin/bash
# An ADD that fails midway (eth0 already exists in the container, so creating the veth
# fails) leaves nothing behind: error code 100 naming the failed command, no link in the
# host namespace (the bridge it created is removed too), no reservation, and the
# container's own eth0 untouched.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
NET=rbnet
BR=cni-rb0
CONF=$(bridge_conf $NET $BR 10.93.0.0/24 '"isGateway":true')
STORE=$(store_dir $NET)

# The container's own eth0 (a veth pair: this kernel has no dummy device).
ip -n "$NS_c1" link add eth0 type veth peer name eth0peer || exit 1
ip -n "$NS_c1" addr add 192.0.2.10/24 dev eth0
ip -n "$NS_c1" link set eth0 up
HOST_BEFORE=$(links "$HOST")
CTR_BEFORE=$(ip -n "$NS_c1" -j addr show | "$PY" -c '
import json, sys
for l in sorted(json.load(sys.stdin), key=lambda l: l["ifname"]):
    print(l["ifname"], l["address"], sorted(a["local"] for a in l.get("addr_info", [])))')

cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc nonzero "ADD fails when eth0 already exists in the container"
assert_error_code 100 "the error is a JSON error"
assert_json "${CNI_OUT:-null}" "d and 'link add' in d['msg']" "the error names the command that failed (ip link add ...)"
assert_json "${CNI_OUT:-null}" "d and d.get('cniVersion') == '1.0.0'" "the error carries the config's cniVersion"

assert_eq "$(links "$HOST")" "$HOST_BEFORE" "no new link in the host namespace (bridge removed too)"
check_not "bridge $BR does not exist" ip -n "$HOST" link show "$BR"
assert_empty "$(reservations "$STORE")" "no reservation file left"
CTR_AFTER=$(ip -n "$NS_c1" -j addr show | "$PY" -c '
import json, sys
for l in sorted(json.load(sys.stdin), key=lambda l: l["ifname"]):
    print(l["ifname"], l["address"], sorted(a["local"] for a in l.get("addr_info", [])))')
assert_eq "$CTR_AFTER" "$CTR_BEFORE" "the container's own eth0 and its address are untouched"

# A failing ADD on a bridge that already serves another container leaves the bridge,
# its gateway address and that container alone.
mk_ns c0
cni ADD ctr-0 "$NS_c0" eth0 "$CONF"
assert_rc 0 "ADD ctr-0 (creates the bridge)"
A0=$(result_addr "$CNI_OUT")
HOST_BEFORE=$(links "$HOST")
cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc nonzero "ADD ctr-1 fails again with the bridge present"
assert_error_code 100 "the error is a JSON error"
assert_eq "$(links "$HOST")" "$HOST_BEFORE" "host links unchanged (existing bridge kept)"
assert_eq "$(addrs "$HOST" "$BR")" "10.93.0.1/24" "the bridge keeps its gateway address"
assert_eq "$(reservations "$STORE")" "$A0" "only ctr-0's reservation remains"
check "ctr-0 still pings its gateway" pings "$NS_c0" 10.93.0.1
cni DEL ctr-0 "$NS_c0" eth0 "$CONF"
assert_rc 0 "DEL ctr-0"

# The same ADD works once the name is free: the failure left nothing in the way.
ip -n "$NS_c1" link del eth0
cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "ADD succeeds once eth0 is free"
assert_eq "$(reservations "$STORE" | grep -c .)" 1 "exactly one reservation"
cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "DEL"

finish
