#!/bin/bash
# macvlan against the kernel. In a throwaway host namespace a veth pair stands in for the
# NIC (this kernel has no dummy device); its end mvm0 is the master.
# - two containers in bridge mode with host-local: the result has the one sandboxed
#   interface, the link is a macvlan in bridge mode on mvm0 with the result's MAC and
#   address, no temporary link is left, and the containers ping each other;
# - CHECK with the prevResult passes;
# - a failing ADD (CNI_IFNAME already taken in the container) leaves no link and no
#   reservation behind;
# - bad mode and an MTU above the master's are refused before anything changes;
# - the master defaults to the host's default-route device; linkInContainer uses a master
#   inside the container;
# - DEL removes the link, twice in a row is fine, and DEL after the netns is deleted
#   exits 0 and releases the address.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
mk_ns c3
mk_ns c4
NET=mvnet
STORE=$(store_dir $NET)

in_host ip link add mvm0 type veth peer name mvm1 || exit 1
in_host ip link set mvm0 up
in_host ip link set mvm1 up

# macvlan_conf [EXTRA_JSON_FIELDS]: a 1.0.0 macvlan + host-local config.
macvlan_conf() {
    printf '{"cniVersion":"1.0.0","name":"%s","type":"macvlan"%s,"ipam":{"type":"host-local","dataDir":"%s","subnet":"10.77.0.0/24"}}' \
        "$NET" "${1:+,$1}" "$T_TMP/data"
}
# link_kind_json NS DEV: `ip -j -d link show` of DEV as one object, or null.
link_or_null() { local l; l=$(link_json "$1" "$2"); printf '%s' "${l:-null}"; }
nreservations() { reservations "$STORE" | wc -l; }

CONF=$(macvlan_conf '"master":"mvm0","mode":"bridge"')
MASTER_INDEX=$(ip -n "$HOST" -j link show dev mvm0 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["ifindex"])')

# --- dry run changes nothing
cni ADD ctr-1 "$NS_c1" eth0 "$CONF" --dry-run
assert_rc 0 "dry-run ADD exits 0"
check "dry-run shows the macvlan creation" grep -q "type macvlan mode bridge" <<<"$CNI_OUT"
assert_eq "$(links "$NS_c1")" "lo" "after the dry run the container has only lo"
assert_empty "$(reservations "$STORE")" "after the dry run no address is reserved"

# --- two containers in bridge mode
cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "ADD ctr-1"
R1=$CNI_OUT
cni ADD ctr-2 "$NS_c2" eth0 "$CONF"
assert_rc 0 "ADD ctr-2"
R2=$CNI_OUT

assert_json "$R1" "len(d['interfaces']) == 1 and d['interfaces'][0]['name'] == 'eth0' and d['interfaces'][0]['sandbox'] == '/run/netns/$NS_c1'" \
    "result has one interface: eth0 in the container sandbox"
assert_json "$R1" "len(d['ips']) == 1 and d['ips'][0]['interface'] == 0" "ips[0].interface == 0"
A1=$(result_addr "$R1")
A2=$(result_addr "$R2")
assert_ne "$A1" "$A2" "the two containers got different addresses"
assert_eq "$(addrs "$NS_c1" eth0)" "$A1/24" "container 1 eth0 has the result address"
assert_eq "$(addrs "$NS_c2" eth0)" "$A2/24" "container 2 eth0 has the result address"
L=$(link_or_null "$NS_c1" eth0)
assert_json "$L" "d and d['linkinfo']['info_kind'] == 'macvlan' and d['linkinfo']['info_data']['mode'] == 'bridge'" \
    "container 1 eth0 is a macvlan in bridge mode"
assert_json "$L" "d and d.get('link_index') == $MASTER_INDEX" "container 1 eth0 sits on mvm0 (ifindex $MASTER_INDEX)"
assert_json "$L" "d and 'UP' in d['flags'] and d['address'] == '$(jget "$R1" "d['interfaces'][0]['mac']")'" \
    "container 1 eth0 is up with the result's MAC"
assert_eq "$(links "$NS_c1" | tr '\n' ' ')" "eth0 lo " "no temporary link is left in container 1"
assert_eq "$(links_of_kind "$HOST" macvlan)" "" "no macvlan in the host namespace"

check "container 1 pings container 2 ($A2)" pings "$NS_c1" "$A2"
check "container 2 pings container 1 ($A1)" pings "$NS_c2" "$A1"

# --- CHECK
cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$CONF" "$R1")"
assert_rc 0 "CHECK ctr-1 with its prevResult"
cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$(macvlan_conf '"master":"mvm0","mode":"private"')" "$R1")"
assert_error_code 101 "CHECK with another mode reports a mismatch"

# --- a failing ADD is rolled back: eth0 is taken in container 1
cni ADD ctr-1b "$NS_c1" eth0 "$CONF"
assert_rc nonzero "ADD of a second eth0 into container 1 fails"
assert_eq "$(links "$NS_c1" | tr '\n' ' ')" "eth0 lo " "the failed ADD left no link in container 1"
assert_eq "$(nreservations)" "2" "the failed ADD released its address"

# --- refused configs change nothing
cni ADD ctr-3 "$NS_c3" eth0 "$(macvlan_conf '"master":"mvm0","mode":"source"')"
assert_error_code 7 "an unknown mode is refused"
cni ADD ctr-3 "$NS_c3" eth0 "$(macvlan_conf '"master":"mvm0","mtu":9000')"
assert_error_code 7 "an MTU above the master's is refused"
cni ADD ctr-3 "$NS_c3" eth0 "$(macvlan_conf '"master":"nosuch0"')"
assert_error_code 7 "a master that does not exist is refused"
assert_eq "$(links "$NS_c3")" "lo" "the refused ADDs left container 3 as it was"
assert_eq "$(nreservations)" "2" "the refused ADDs reserved nothing"

# --- default master: the host's default-route device
in_host ip addr add 10.66.0.1/24 dev mvm0
in_host ip route add default via 10.66.0.254 dev mvm0
cni ADD ctr-3 "$NS_c3" eth0 "$(macvlan_conf '"mode":"vepa","mtu":1400')"
assert_rc 0 "ADD ctr-3 without a master"
L=$(link_or_null "$NS_c3" eth0)
assert_json "$L" "d and d.get('link_index') == $MASTER_INDEX and d['linkinfo']['info_data']['mode'] == 'vepa' and d['mtu'] == 1400" \
    "without a master the macvlan sits on the default-route device, vepa, mtu 1400"

# --- linkInContainer: the master is inside the container
in_host ip link add mvl0 type veth peer name lnk0 netns "/run/netns/$NS_c4"
in_host ip link set mvl0 up
ip -n "$NS_c4" link set lnk0 up
cni ADD ctr-4 "$NS_c4" eth0 "$(macvlan_conf '"master":"lnk0","linkInContainer":true,"mode":"private"')"
assert_rc 0 "ADD ctr-4 with linkInContainer"
L=$(link_or_null "$NS_c4" eth0)
assert_json "$L" "d and d.get('link') == 'lnk0' and d['linkinfo']['info_data']['mode'] == 'private'" \
    "with linkInContainer the macvlan sits on lnk0 in the container"
R4=$CNI_OUT
cni CHECK ctr-4 "$NS_c4" eth0 "$(with_prev "$(macvlan_conf '"master":"lnk0","linkInContainer":true,"mode":"private"')" "$R4")"
assert_rc 0 "CHECK ctr-4 with linkInContainer"

# --- DEL
cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "DEL ctr-1"
check_not "container 1 no longer has eth0" ip -n "$NS_c1" link show eth0
cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "a second DEL ctr-1 exits 0"
del_ns "$NS_c2"
cni DEL ctr-2 "/run/netns/$NS_c2" eth0 "$CONF"
assert_rc 0 "DEL ctr-2 after its netns was deleted exits 0"
cni DEL ctr-3 "" eth0 "$CONF"
assert_rc 0 "DEL ctr-3 with an empty CNI_NETNS exits 0"
cni DEL ctr-3 "$NS_c3" eth0 "$CONF"
assert_rc 0 "DEL ctr-3"
cni DEL ctr-4 "$NS_c4" eth0 "$CONF"
assert_rc 0 "DEL ctr-4"
assert_eq "$(links "$NS_c4" | tr '\n' ' ')" "lnk0 lo " "DEL ctr-4 left only the master in container 4"
assert_empty "$(reservations "$STORE")" "no reservation left after the DELs"
assert_eq "$(links "$HOST" | tr '\n' ' ')" "lo mvl0 mvm0 mvm1 " "the host namespace has only the test's own links"

finish
