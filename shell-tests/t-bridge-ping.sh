#!/bin/bash
# Two containers on one bridge (isGateway, host-local 10.x subnet) reach each other and
# the gateway; the ADD result has the bridge, the host veth and the sandboxed container
# interface; a --dry-run ADD beforehand changes nothing.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
NET=pingnet
BR=cni-ping0
CONF=$(bridge_conf $NET $BR 10.88.0.0/24 '"isGateway":true')
STORE=$(store_dir $NET)

# --- dry run: prints a plan, changes nothing
cni ADD ctr-1 "$NS_c1" eth0 "$CONF" --dry-run
assert_rc 0 "dry-run ADD exits 0"
check "dry-run prints the ip commands it would run" grep -q "ip link add" <<<"$CNI_OUT"
cni ADD ctr-1 "$NS_c1" eth0 "$CONF" --dry-run=json
assert_rc 0 "dry-run=json ADD exits 0"
assert_json "$CNI_OUT" "isinstance(d['plan'], list) and len(d['plan']) > 0 and d['result']['ips'][0]['address'].startswith('10.88.0.')" \
    "dry-run=json gives a plan and a result"
assert_eq "$(links "$HOST")" "lo" "after dry runs the host namespace has only lo"
assert_eq "$(links "$NS_c1")" "lo" "after dry runs the container namespace has only lo"
assert_empty "$(reservations "$STORE")" "after dry runs no address is reserved"

# --- two real ADDs
cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "ADD ctr-1"
R1=$CNI_OUT
cni ADD ctr-2 "$NS_c2" eth0 "$CONF"
assert_rc 0 "ADD ctr-2"
R2=$CNI_OUT

assert_json "$R1" "d['cniVersion'] == '1.0.0'" "result carries cniVersion 1.0.0"
assert_json "$R1" "len(d['interfaces']) == 3" "result has 3 interfaces"
assert_json "$R1" "d['interfaces'][0]['name'] == '$BR' and 'sandbox' not in d['interfaces'][0]" "interfaces[0] is the bridge, no sandbox"
assert_json "$R1" "d['interfaces'][1]['name'].startswith('veth') and 'sandbox' not in d['interfaces'][1]" "interfaces[1] is the host veth, no sandbox"
assert_json "$R1" "d['interfaces'][2]['name'] == 'eth0' and d['interfaces'][2]['sandbox'] == '/run/netns/$NS_c1'" "interfaces[2] is eth0 in the container sandbox"
assert_json "$R1" "len(d['ips']) == 1 and d['ips'][0]['interface'] == 2" "ips[0].interface == 2"
assert_json "$R1" "d['ips'][0]['gateway'] == '10.88.0.1' and d['ips'][0]['address'].endswith('/24')" "gateway is the subnet's first address"

A1=$(result_addr "$R1")
A2=$(result_addr "$R2")
assert_ne "$A1" "$A2" "the two containers got different addresses"
assert_eq "$(addrs "$NS_c1" eth0)" "$A1/24" "container 1 eth0 has the result address"
assert_eq "$(addrs "$NS_c2" eth0)" "$A2/24" "container 2 eth0 has the result address"
assert_eq "$(addrs "$HOST" $BR)" "10.88.0.1/24" "the bridge has the gateway address"

HV1=$(jget "$R1" "d['interfaces'][1]['name']")
L=$(link_json "$HOST" "$HV1")
assert_json "${L:-null}" "d and d.get('master') == '$BR' and d['linkinfo']['info_kind'] == 'veth' and 'UP' in d['flags']" \
    "host veth $HV1 exists, is up and enslaved to $BR"
assert_json "${L:-null}" "d and d['address'] == '$(jget "$R1" "d['interfaces'][1]['mac']")'" "host veth MAC matches the result"
L=$(link_json "$NS_c1" eth0)
assert_json "${L:-null}" "d and d['address'] == '$(jget "$R1" "d['interfaces'][2]['mac']")'" "container eth0 MAC matches the result"
assert_eq "$(reservations "$STORE" | sort | tr '\n' ' ')" "$(printf '%s\n' "$A1" "$A2" | sort | tr '\n' ' ')" "both addresses are reserved"

# --- a dry-run DEL changes nothing either
cni DEL ctr-1 "$NS_c1" eth0 "$CONF" --dry-run
assert_rc 0 "dry-run DEL exits 0"
check "dry-run DEL prints the deletion it would run" grep -q "link del" <<<"$CNI_OUT"
check "after a dry-run DEL the host veth still exists" ip -n "$HOST" link show "$HV1"
check "after a dry-run DEL the reservation still exists" test -e "$STORE/$A1"
assert_eq "$(addrs "$NS_c1" eth0)" "$A1/24" "after a dry-run DEL eth0 keeps its address"

# --- traffic
check "container 1 pings container 2 ($A2)" pings "$NS_c1" "$A2"
check "container 2 pings container 1 ($A1)" pings "$NS_c2" "$A1"
check "container 1 pings the gateway" pings "$NS_c1" 10.88.0.1
check "container 2 pings the gateway" pings "$NS_c2" 10.88.0.1

# --- clean up through the plugin
cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "DEL ctr-1"
cni DEL ctr-2 "$NS_c2" eth0 "$CONF"
assert_rc 0 "DEL ctr-2"
assert_empty "$(reservations "$STORE")" "no reservation left after DEL"
assert_empty "$(links_of_kind "$HOST" veth)" "no veth left in the host namespace"
check_not "container 1 no longer has eth0" ip -n "$NS_c1" link show eth0

finish
