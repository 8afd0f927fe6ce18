#!/bin/bash
# CHECK with the ADD result as prevResult passes; it fails with a JSON error once the
# container's address is removed by hand, and once the host veth is deleted.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
NET=checknet
BR=cni-chk0
CONF=$(bridge_conf $NET $BR 10.92.0.0/24 '"isDefaultGateway":true')

cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "ADD ctr-1"
R1=$CNI_OUT
cni ADD ctr-2 "$NS_c2" eth0 "$CONF"
assert_rc 0 "ADD ctr-2"
R2=$CNI_OUT
C1=$(with_prev "$CONF" "$R1")
C2=$(with_prev "$CONF" "$R2")

cni CHECK ctr-1 "$NS_c1" eth0 "$C1"
assert_rc 0 "CHECK ctr-1 right after ADD"
assert_empty "$CNI_OUT" "a passing CHECK prints nothing"
cni CHECK ctr-2 "$NS_c2" eth0 "$C2"
assert_rc 0 "CHECK ctr-2 right after ADD"

cni CHECK ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc nonzero "CHECK without prevResult fails"
assert_json "${CNI_OUT:-null}" "d and isinstance(d.get('code'), int) and d.get('msg')" "... with a JSON error"

cni CHECK ctr-1 "$NS_c2" eth0 "$C1"
assert_rc nonzero "CHECK of ctr-1 against the wrong netns fails"

# --- the container's address removed by hand
A1=$(jget "$R1" "d['ips'][0]['address']")
ip -n "$NS_c1" addr del "$A1" dev eth0
cni CHECK ctr-1 "$NS_c1" eth0 "$C1"
assert_rc nonzero "CHECK after the container address was deleted"
assert_json "${CNI_OUT:-null}" "d and isinstance(d.get('code'), int) and d['code'] != 0 and d.get('msg')" "... gives a JSON error"
cni CHECK ctr-2 "$NS_c2" eth0 "$C2"
assert_rc 0 "CHECK ctr-2 still passes"

# --- the host veth deleted
HV2=$(jget "$R2" "d['interfaces'][1]['name']")
ip -n "$HOST" link del "$HV2"
cni CHECK ctr-2 "$NS_c2" eth0 "$C2"
assert_rc nonzero "CHECK after the host veth was deleted"
assert_json "${CNI_OUT:-null}" "d and isinstance(d.get('code'), int) and d['code'] != 0 and d.get('msg')" "... gives a JSON error"

cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "DEL ctr-1"
cni DEL ctr-2 "$NS_c2" eth0 "$CONF"
assert_rc 0 "DEL ctr-2"

finish
