#!/bin/bash
# bridge "vlan": ports of one VLAN reach each other, another VLAN on the same bridge is
# isolated, and the host veth carries the VLAN as PVID/untagged. Needs bridge VLAN
# filtering in the kernel; skipped without it (shell-tests/qemu/cases/bridge-vlan.sh tests
# these options and more under Debian's kernel in the qemu VM, see t-qemu-kernel.sh).
. "$(dirname "$0")/lib.sh"

setup_host
if ! in_host ip link add name vlprobe type bridge vlan_filtering 1 >/dev/null 2>&1; then
    skip "kernel lacks bridge vlan filtering (ip link add type bridge vlan_filtering 1 fails); covered in the qemu VM by shell-tests/qemu/cases/bridge-vlan.sh"
fi
ip -n "$HOST" link del vlprobe
command -v bridge >/dev/null || skip "iproute2's bridge command not found"

mk_ns a1
mk_ns a2
mk_ns b1
BR=cni-vlan0
# Two networks on one bridge: VLAN 100 and VLAN 200, same subnet, disjoint ranges, so a
# packet between them could only pass if the VLANs leaked.
conf() {
    printf '{"cniVersion":"1.0.0","name":"%s","type":"bridge","bridge":"%s","vlan":%s,"ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.97.0.0/24","rangeStart":"%s","rangeEnd":"%s"}]]}}' \
        "$1" "$BR" "$2" "$T_TMP/data" "$3" "$4"
}
C100=$(conf vlan100 100 10.97.0.10 10.97.0.99)
C200=$(conf vlan200 200 10.97.0.100 10.97.0.199)

cni ADD ctr-a1 "$NS_a1" eth0 "$C100"
assert_rc 0 "ADD a1 on VLAN 100"
A1=$(result_addr "$CNI_OUT")
HVA1=$(jget "$CNI_OUT" "d['interfaces'][1]['name']")
cni ADD ctr-a2 "$NS_a2" eth0 "$C100"
assert_rc 0 "ADD a2 on VLAN 100"
A2=$(result_addr "$CNI_OUT")
cni ADD ctr-b1 "$NS_b1" eth0 "$C200"
assert_rc 0 "ADD b1 on VLAN 200"
B1=$(result_addr "$CNI_OUT")

assert_json "$(link_json "$HOST" "$BR")" "d['linkinfo']['info_data'].get('vlan_filtering') == 1" "the bridge filters VLANs"
VL=$(in_host bridge -j vlan show dev "$HVA1")
log "bridge vlan show dev $HVA1: $VL"
assert_json "${VL:-null}" \
    "any(v['vlan'] == 100 and 'PVID' in v.get('flags', []) and 'Egress Untagged' in v.get('flags', []) for p in d for v in p['vlans'])" \
    "host veth of a1 has VLAN 100 as PVID, untagged"
assert_json "${VL:-null}" "not any(v['vlan'] == 1 for p in d for v in p['vlans'])" "host veth of a1 is not in the default VLAN 1"

check "a1 pings a2 (same VLAN)" pings "$NS_a1" "$A2"
check_not "a1 cannot ping b1 (other VLAN)" pings "$NS_a1" "$B1"

for pair in a1:C100 a2:C100 b1:C200; do
    short=${pair%%:*}
    ns_var="NS_$short"
    conf_var=${pair#*:}
    cni DEL "ctr-$short" "${!ns_var}" eth0 "${!conf_var}"
    assert_rc 0 "DEL ctr-$short"
done
assert_empty "$(links_of_kind "$HOST" veth)" "no veth left"

finish
