#!/bin/bash
# loopback: ADD brings lo up (127.0.0.1 answers inside the container) and reports lo
# with 127.0.0.1/8; CHECK passes; DEL brings lo down; DEL on a deleted netns exits 0.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
CONF='{"cniVersion":"1.0.0","name":"lo-net","type":"loopback"}'

lo_up() { jtrue "$(link_json "$1" lo)" "'UP' in d['flags']"; }

check_not "lo starts down in a new namespace" lo_up "$NS_c1"
cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "ADD"
R=$CNI_OUT
assert_json "$R" "d['cniVersion'] == '1.0.0'" "result carries cniVersion 1.0.0"
assert_json "$R" "len(d['interfaces']) == 1 and d['interfaces'][0]['name'] == 'lo' and d['interfaces'][0]['sandbox'] == '/run/netns/$NS_c1'" \
    "result has lo in the container sandbox"
assert_json "$R" "any(ip['address'] == '127.0.0.1/8' and ip.get('interface') == 0 for ip in d['ips'])" "result has 127.0.0.1/8 on interface 0"
check "lo is up" lo_up "$NS_c1"
check "ping 127.0.0.1 works inside the container" pings "$NS_c1" 127.0.0.1
check_not "the other container's lo is untouched" lo_up "$NS_c2"
assert_eq "$(links "$HOST")" lo "no link added to the host namespace"

cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$CONF" "$R")"
assert_rc 0 "CHECK after ADD"

cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "DEL"
check_not "lo is down after DEL" lo_up "$NS_c1"
check_not "ping 127.0.0.1 fails after DEL" pings "$NS_c1" 127.0.0.1
cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$CONF" "$R")"
assert_rc nonzero "CHECK fails once lo is down"

cni ADD ctr-2 "$NS_c2" eth0 "$CONF"
assert_rc 0 "ADD ctr-2"
GONE=/run/netns/$NS_c2
del_ns "$NS_c2"
cni DEL ctr-2 "$GONE" eth0 "$CONF"
assert_rc 0 "DEL with the netns deleted"
cni DEL ctr-2 "" eth0 "$CONF"
assert_rc 0 "DEL with CNI_NETNS empty"

finish
