#!/bin/bash
# A repeated ADD of an attachment that is live (a runtime retrying, or a duplicate
# request) may fail, since its links exist, but it must not take anything away from the
# live attachment: not its links, not its address, and not the reservation that keeps
# host-local from giving that address to another container.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
NET=readdnet
BR=cni-readd0
# One address in the pool: if the live attachment's reservation were lost, the next
# container would get the very same address.
CONF=$(printf '{"cniVersion":"1.0.0","name":"%s","type":"bridge","bridge":"%s","isGateway":true,"ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.100.0.0/24","rangeStart":"10.100.0.2","rangeEnd":"10.100.0.2"}]]}}' \
    "$NET" "$BR" "$T_TMP/data")
STORE=$(store_dir $NET)

cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "first ADD ctr-1"
R1=$CNI_OUT
A1=$(result_addr "$R1")
HV1=$(jget "$R1" "d['interfaces'][1]['name']")
check "$A1 is reserved" test -e "$STORE/$A1"

cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
if [[ $CNI_RC == 0 ]]; then
    assert_eq "$(result_addr "$CNI_OUT")" "$A1" "the repeated ADD returns the same address"
else
    assert_json "${CNI_OUT:-null}" "d and isinstance(d.get('code'), int) and d.get('msg')" "the repeated ADD fails with a JSON error"
fi
check "after the repeated ADD, $A1 is still reserved" test -e "$STORE/$A1"
check "after the repeated ADD, the reservation still names ctr-1/eth0" cmp -s "$STORE/$A1" <(printf 'ctr-1\r\neth0')
check "after the repeated ADD, host veth $HV1 still exists" ip -n "$HOST" link show "$HV1"
assert_eq "$(addrs "$NS_c1" eth0)" "$A1/24" "after the repeated ADD, eth0 still has $A1"
check "after the repeated ADD, ctr-1 still pings its gateway" pings "$NS_c1" 10.100.0.1
cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$CONF" "$R1")"
assert_rc 0 "after the repeated ADD, CHECK of ctr-1 passes"

cni ADD ctr-2 "$NS_c2" eth0 "$CONF"
if [[ $CNI_RC == 0 ]]; then
    assert_ne "$(result_addr "$CNI_OUT")" "$A1" "another container does not get ctr-1's live address $A1"
    cni DEL ctr-2 "$NS_c2" eth0 "$CONF"
else
    assert_error_code 102 "another container finds the one-address pool exhausted"
fi

cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "DEL ctr-1"
assert_empty "$(reservations "$STORE")" "no reservation left"

finish
