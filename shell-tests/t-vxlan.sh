#!/bin/bash
# vxlan: two "node" namespaces joined by a veth underlay (192.168.77.1/.2); on each node
# the plugin (run inside that node's namespace) attaches a container to VNI 42 with
# `remotes` pointing at the other node. The containers share 10.42.0.0/24 (host-local
# ranges .10-.19 on node 1, .20-.29 on node 2) and ping each other over the overlay.
# A second container on node 1 shares the node's vxlan42 and bridge (one flood entry
# per peer, not two). CHECK passes; DEL removes the container veths and reservations and
# keeps the shared VXLAN device and bridge; repeated DELs and a DEL after the namespace
# is gone exit 0. A vxlan42 with another VNI is refused before anything changes.
. "$(dirname "$0")/lib.sh"

mk_ns n1
mk_ns n2
mk_ns c1
mk_ns c2
mk_ns c3
for n in "$NS_n1" "$NS_n2"; do ip -n "$n" link set lo up; done
ip -n "$NS_n1" link add name u1 type veth peer name u2 netns "$NS_n2"
ip -n "$NS_n1" addr add 192.168.77.1/24 dev u1
ip -n "$NS_n2" addr add 192.168.77.2/24 dev u2
ip -n "$NS_n1" link set u1 up
ip -n "$NS_n2" link set u2 up

NET=overlay
# vx_conf LOCAL REMOTE DEV FIRST LAST DATADIR
vx_conf() {
    printf '{"cniVersion":"1.0.0","name":"%s","type":"vxlan","vni":42,"dev":"%s","local":"%s","remotes":["%s"],"ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.42.0.0/24","rangeStart":"%s","rangeEnd":"%s"}]]}}' \
        "$NET" "$3" "$1" "$2" "$6" "$4" "$5"
}
CONF1=$(vx_conf 192.168.77.1 192.168.77.2 u1 10.42.0.10 10.42.0.19 "$T_TMP/data1")
CONF2=$(vx_conf 192.168.77.2 192.168.77.1 u2 10.42.0.20 10.42.0.29 "$T_TMP/data2")
STORE1="$T_TMP/data1/$NET"
STORE2="$T_TMP/data2/$NET"
on() { HOST=$1; shift; "$@"; }  # runs a lib.sh helper with the plugin in node $1
flood() { in_ns "$1" bridge -j fdb show dev vxlan42 | "$PY" -c '
import json, sys
print(" ".join(sorted(e["dst"] for e in json.load(sys.stdin) if e["mac"] == "00:00:00:00:00:00" and "dst" in e)))'; }

# --- a vxlan42 of another VNI is refused, and nothing is made
ip -n "$NS_n1" link add name vxlan42 type vxlan id 43 dstport 4789 dev u1
on "$NS_n1" cni ADD ctr-1 "$NS_c1" eth0 "$CONF1"
assert_error_code 7 "an existing vxlan42 with VNI 43 is refused"
assert_eq "$(links "$NS_c1")" "lo" "the refused ADD changed nothing in the container"
check_not "nor made the bridge" ip -n "$NS_n1" link show vxbr42
ip -n "$NS_n1" link del vxlan42

# --- one container per node
on "$NS_n1" cni ADD ctr-1 "$NS_c1" eth0 "$CONF1"
assert_rc 0 "ADD c1 on node 1"
R1=$CNI_OUT
on "$NS_n2" cni ADD ctr-2 "$NS_c2" eth0 "$CONF2"
assert_rc 0 "ADD c2 on node 2"
R2=$CNI_OUT
A1=$(result_addr "$R1")
A2=$(result_addr "$R2")
assert_eq "$A1" "10.42.0.10" "c1 got the first address of node 1's range"
assert_eq "$A2" "10.42.0.20" "c2 got the first address of node 2's range"
assert_json "$R1" "[i['name'] for i in d['interfaces']] == ['vxbr42', d['interfaces'][1]['name'], 'eth0'] and d['ips'][0]['interface'] == 2" \
    "result: bridge, host veth, container interface"

L=$(link_json "$NS_n1" vxlan42)
assert_json "${L:-null}" "d and d['linkinfo']['info_kind'] == 'vxlan' and d['linkinfo']['info_data']['id'] == 42" "node 1 has vxlan42 with VNI 42"
assert_json "${L:-null}" "d and d['linkinfo']['info_data']['port'] == 4789 and d['linkinfo']['info_data'].get('link') == 'u1' and d['linkinfo']['info_data'].get('local') == '192.168.77.1'" \
    "vxlan42 uses port 4789, dev u1, local 192.168.77.1"
assert_json "${L:-null}" "d and d.get('master') == 'vxbr42' and 'UP' in d['flags'] and d['mtu'] == 1450" "vxlan42 is up on vxbr42 with MTU 1450"
assert_eq "$(flood "$NS_n1")" "192.168.77.2" "node 1 floods to node 2"
assert_eq "$(flood "$NS_n2")" "192.168.77.1" "node 2 floods to node 1"
assert_json "$(link_json "$NS_c1" eth0 || echo null)" "d and d['mtu'] == 1450" "the container interface has the overlay MTU (1500 - 50)"
assert_eq "$(addrs "$NS_c1" eth0)" "$A1/24" "c1 eth0 has its address"

check "c1 pings c2 over the overlay" pings "$NS_c1" "$A2"
check "c2 pings c1 over the overlay" pings "$NS_c2" "$A1"

on "$NS_n1" cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$CONF1" "$R1")"
assert_rc 0 "CHECK c1 passes"

# --- a second container on node 1 shares the VXLAN device and the bridge
on "$NS_n1" cni ADD ctr-3 "$NS_c3" eth0 "$CONF1"
assert_rc 0 "ADD c3 on node 1"
A3=$(result_addr "$CNI_OUT")
assert_eq "$(links_of_kind "$NS_n1" vxlan)" "vxlan42" "node 1 still has one VXLAN device"
assert_eq "$(flood "$NS_n1")" "192.168.77.2" "and one flood entry for node 2"
check "c3 pings c2 over the overlay" pings "$NS_c3" "$A2"
check "c3 pings c1 on the same node" pings "$NS_c3" "$A1"

# --- DEL
HV1=$(jget "$R1" "d['interfaces'][1]['name']")
on "$NS_n1" cni DEL ctr-1 "$NS_c1" eth0 "$CONF1"
assert_rc 0 "DEL c1"
check_not "c1 eth0 is gone" ip -n "$NS_c1" link show eth0
check_not "its host veth is gone" ip -n "$NS_n1" link show "$HV1"
assert_eq "$(reservations "$STORE1")" "$A3" "only c3's address stays reserved on node 1"
check "c3 still pings c2" pings "$NS_c3" "$A2"
on "$NS_n1" cni DEL ctr-1 "$NS_c1" eth0 "$CONF1"
assert_rc 0 "a second DEL exits 0"
on "$NS_n1" cni DEL ctr-3 "$NS_c3" eth0 "$CONF1"
assert_rc 0 "DEL c3"
assert_empty "$(reservations "$STORE1")" "node 1 has no reservation left"
assert_empty "$(links_of_kind "$NS_n1" veth | grep -v '^u1$')" "node 1 has no container veth left"
check "the shared vxlan42 stays on node 1" ip -n "$NS_n1" link show vxlan42
check "the shared bridge stays on node 1" ip -n "$NS_n1" link show vxbr42

del_ns "$NS_c2"
on "$NS_n2" cni DEL ctr-2 "/run/netns/$NS_c2" eth0 "$CONF2"
assert_rc 0 "DEL after the namespace is gone exits 0"
assert_empty "$(reservations "$STORE2")" "and releases the address on node 2"
assert_empty "$(links_of_kind "$NS_n2" veth | grep -v '^u2$')" "node 2 has no container veth left"
on "$NS_n2" cni DEL ctr-2 "" eth0 "$CONF2"
assert_rc 0 "DEL with an empty CNI_NETNS exits 0"

finish
