#!/bin/bash
# tap: a tap made inside the container with mtu, mac and multiQueue, addresses from
# host-local; owner/group (vnet_hdr) and a bridge inside the container; CHECK; a
# selinuxContext on a host without SELinux is refused before anything changes; DEL
# removes the tap and the reservation, and repeated DELs or a DEL after the namespace is
# gone exit 0.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
NET=tapnet
STORE=$(store_dir $NET)
tap_conf() { # EXTRA_FIELDS [IPAM=yes]
    local ipam=""
    [[ ${2:-yes} == yes ]] && ipam=$(printf ',"ipam":{"type":"host-local","dataDir":"%s","subnet":"10.77.0.0/24"}' "$T_TMP/data")
    printf '{"cniVersion":"1.0.0","name":"%s","type":"tap"%s%s}' "$NET" "${1:+,$1}" "$ipam"
}
info() { jget "${1:-null}" "d['linkinfo']['info_data'].get('$2')"; }

# --- dry run changes nothing
CONF=$(tap_conf '"mtu":1400,"mac":"02:77:00:00:00:01","multiQueue":true')
cni ADD ctr-1 "$NS_c1" tap0 "$CONF" --dry-run
assert_rc 0 "dry-run ADD exits 0"
check "dry-run shows ip tuntap add" grep -q "ip tuntap add mode tap name tap0 multi_queue" <<<"$CNI_OUT"
assert_eq "$(links "$NS_c1")" "lo" "after the dry run the container has only lo"
assert_empty "$(reservations "$STORE")" "after the dry run nothing is reserved"

# --- ADD: mtu, mac, multiQueue, IPAM
cni ADD ctr-1 "$NS_c1" tap0 "$CONF"
assert_rc 0 "ADD tap0"
R=$CNI_OUT
assert_json "$R" "d['interfaces'] == [{'name':'tap0','mac':'02:77:00:00:00:01','sandbox':'/run/netns/$NS_c1'}]" \
    "result names tap0 with its MAC in the sandbox"
assert_json "$R" "d['ips'][0]['interface'] == 0 and d['ips'][0]['address'].startswith('10.77.0.')" "ips[0] is on interface 0"
L=$(link_json "$NS_c1" tap0)
assert_json "${L:-null}" "d and d['linkinfo']['info_kind'] == 'tun' and d['linkinfo']['info_data']['type'] == 'tap'" "tap0 is a tap"
assert_json "${L:-null}" "d and d['mtu'] == 1400 and d['address'] == '02:77:00:00:00:01'" "tap0 has mtu 1400 and the MAC"
assert_eq "$(info "$L" multi_queue)" "true" "tap0 is multi-queue"
assert_eq "$(info "$L" persist)" "true" "tap0 is persistent"
assert_eq "$(info "$L" vnet_hdr)" "false" "no vnet_hdr without owner and group"
assert_json "${L:-null}" "d and 'UP' in d['flags']" "tap0 is up"
A=$(result_addr "$R")
assert_eq "$(addrs "$NS_c1" tap0)" "$A/24" "tap0 has the result address"
assert_eq "$(reservations "$STORE")" "$A" "the address is reserved"
assert_empty "$(links_of_kind "$HOST" tun)" "nothing was made in the host namespace"

# --- CHECK
cni CHECK ctr-1 "$NS_c1" tap0 "$(with_prev "$CONF" "$R")"
assert_rc 0 "CHECK passes"
in_ns "$NS_c1" ip link set tap0 mtu 1300
cni CHECK ctr-1 "$NS_c1" tap0 "$(with_prev "$CONF" "$R")"
assert_error_code 101 "CHECK notices the changed MTU"

# --- owner/group (vnet_hdr), a bridge in the container, L2 only, runtime MAC
in_ns "$NS_c1" ip link add name br0 type bridge
CONF2=$(tap_conf '"owner":4321,"group":4322,"bridge":"br0"' no)
CNI_ARGS="IgnoreUnknown=1;MAC=02:77:00:00:00:02" cni ADD ctr-1 "$NS_c1" tap1 "$CONF2"
assert_rc 0 "ADD tap1 with owner, group and bridge"
L=$(link_json "$NS_c1" tap1)
assert_eq "$(info "$L" user)" "4321" "tap1 belongs to uid 4321"
assert_eq "$(info "$L" group)" "4322" "tap1 belongs to gid 4322"
assert_eq "$(info "$L" vnet_hdr)" "true" "owner and group: vnet_hdr, as the reference"
assert_json "${L:-null}" "d and d.get('master') == 'br0' and d['address'] == '02:77:00:00:00:02'" "tap1 is on br0 with the CNI_ARGS MAC"
cni CHECK ctr-1 "$NS_c1" tap1 "$(with_prev "$CONF2" "$CNI_OUT")"
assert_rc 0 "CHECK tap1 passes"

# --- refused before any change
cni ADD ctr-1 "$NS_c1" tap2 "$(tap_conf '"bridge":"nosuchbr"' no)"
assert_error_code 7 "a bridge missing from the container is refused"
if [[ -e /sys/fs/selinux/enforce ]]; then
    log "SELinux is enabled here: the selinuxContext refusal is not tested"
else
    cni ADD ctr-1 "$NS_c1" tap2 "$(tap_conf '"selinuxContext":"system_u:system_r:svirt_t:s0"' no)"
    assert_error_code 7 "selinuxContext without SELinux is refused"
    check "the refusal names selinuxContext" grep -q selinuxContext <<<"$CNI_OUT"
fi
check_not "no tap2 was left behind" ip -n "$NS_c1" link show tap2

# --- a failed ADD undoes the tap: an address the container already has on another link
# makes nothing fail, so use a route to an unreachable gateway
BAD=$(printf '{"cniVersion":"1.0.0","name":"%s","type":"tap","ipam":{"type":"host-local","dataDir":"%s","subnet":"10.77.0.0/24","routes":[{"dst":"10.99.0.0/16","gw":"10.98.0.1"}]}}' \
    "$NET" "$T_TMP/data")
cni ADD ctr-2 "$NS_c2" tap0 "$BAD"
assert_rc nonzero "ADD with an unreachable route gateway fails"
assert_eq "$(links "$NS_c2")" "lo" "the failed ADD removed its tap"
assert_eq "$(reservations "$STORE")" "$A" "the failed ADD released its address"

# --- DEL
cni DEL ctr-1 "$NS_c1" tap0 "$CONF"
assert_rc 0 "DEL tap0"
check_not "tap0 is gone" ip -n "$NS_c1" link show tap0
assert_empty "$(reservations "$STORE")" "the reservation is released"
cni DEL ctr-1 "$NS_c1" tap0 "$CONF"
assert_rc 0 "a second DEL exits 0"
cni DEL ctr-1 "$NS_c1" tap1 "$CONF2"
assert_rc 0 "DEL tap1"
check_not "tap1 is gone" ip -n "$NS_c1" link show tap1

cni ADD ctr-2 "$NS_c2" tap0 "$CONF"
assert_rc 0 "ADD in a second container"
del_ns "$NS_c2"
cni DEL ctr-2 "/run/netns/$NS_c2" tap0 "$CONF"
assert_rc 0 "DEL after the namespace is gone exits 0"
assert_empty "$(reservations "$STORE")" "and releases the address"
cni DEL ctr-2 "" tap0 "$CONF"
assert_rc 0 "DEL with an empty CNI_NETNS exits 0"

finish
