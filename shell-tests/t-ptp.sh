#!/bin/bash
# ptp: two containers attached with ptp reach each other through the host (routed, no
# bridge); with ipMasq (iptables, and nftables on a second network) they reach an
# "outside" namespace that has no route back to them; CHECK passes on what ADD made;
# DEL leaves no links, routes, firewall rules or reservations; DEL after the netns was
# deleted (and DEL repeated) exits 0.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
mk_ns c3
mk_ns out

NET=ptpnet
NET6=ptpnft
STORE=$(store_dir $NET)
STORE6=$(store_dir $NET6)

# ptp_conf NAME SUBNET [EXTRA_JSON_FIELDS]: a 1.0.0 ptp + host-local config.
ptp_conf() {
    printf '{"cniVersion":"1.0.0","name":"%s","type":"ptp"%s,"ipam":{"type":"host-local","dataDir":"%s","subnet":"%s","routes":[{"dst":"0.0.0.0/0"}]}}' \
        "$1" "${3:+,$3}" "$T_TMP/data" "$2"
}

# host_routes_matching PATTERN: host routes (v4 main table) mentioning PATTERN.
host_routes_matching() { ip -n "$HOST" -4 route show | grep -F -- "$1"; }

# The "outside": a veth pair between the host namespace and $NS_out (both made by this
# test). $NS_out has no route to the container subnets, so an answer there can only come
# back when the source address was masqueraded to the host's 192.0.2.1.
ip -n "$HOST" link add out0 type veth peer name eth0 netns "$NS_out"
ip -n "$HOST" addr add 192.0.2.1/24 dev out0
ip -n "$HOST" link set out0 up
ip -n "$NS_out" addr add 192.0.2.2/24 dev eth0
ip -n "$NS_out" link set eth0 up
ip -n "$NS_out" link set lo up

MASQ_BACKEND=
if iptables_ok; then
    MASQ_BACKEND=iptables
fi
EXTRA='"ipMasq":true'
[[ -n $MASQ_BACKEND ]] && EXTRA+=',"ipMasqBackend":"iptables"'
CONF=$(ptp_conf $NET 10.77.0.0/24 "$EXTRA")
IPT_BEFORE=$(in_host iptables-save -t nat 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//')

# --- two ADDs
cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "ADD ctr-1"
R1=$CNI_OUT
cni ADD ctr-2 "$NS_c2" eth0 "$CONF"
assert_rc 0 "ADD ctr-2"
R2=$CNI_OUT

assert_json "$R1" "len(d['interfaces']) == 2" "result has 2 interfaces"
assert_json "$R1" "d['interfaces'][0]['name'].startswith('veth') and 'sandbox' not in d['interfaces'][0]" \
    "interfaces[0] is the host veth, no sandbox"
assert_json "$R1" "d['interfaces'][1]['name'] == 'eth0' and d['interfaces'][1]['sandbox'] == '/run/netns/$NS_c1'" \
    "interfaces[1] is eth0 in the container sandbox"
assert_json "$R1" "all(ip['interface'] == 1 for ip in d['ips']) and d['ips'][0]['gateway'] == '10.77.0.1'" \
    "ips are at interface 1 with gateway 10.77.0.1"

A1=$(result_addr "$R1")
A2=$(result_addr "$R2")
HV1=$(jget "$R1" "d['interfaces'][0]['name']")
HV2=$(jget "$R2" "d['interfaces'][0]['name']")
assert_ne "$A1" "$A2" "the two containers got different addresses"
assert_eq "$(addrs "$NS_c1" eth0)" "$A1/24" "container 1 eth0 has the result address"
assert_eq "$(addrs "$HOST" "$HV1")" "10.77.0.1/32" "host veth 1 carries the gateway as /32"
assert_eq "$(addrs "$HOST" "$HV2")" "10.77.0.1/32" "host veth 2 carries the same gateway /32"
check "host route to container 1 via its veth" grep -q "^$A1 dev $HV1 " <<<"$(host_routes_matching "$A1")"
check "host route to container 2 via its veth" grep -q "^$A2 dev $HV2 " <<<"$(host_routes_matching "$A2")"
C1_ROUTES=$(ip -n "$NS_c1" -4 route show dev eth0)
check_not "container 1 has no connected route to the subnet" grep -q "^10.77.0.0/24 proto kernel" <<<"$C1_ROUTES"
check "container 1 reaches the gateway on-link" grep -q "^10.77.0.1 scope link src $A1" <<<"$C1_ROUTES"
check "container 1 routes its subnet via the gateway" grep -q "^10.77.0.0/24 via 10.77.0.1 src $A1" <<<"$C1_ROUTES"
check "container 1 has the default route via the gateway" grep -q "^default via 10.77.0.1" <<<"$C1_ROUTES"
check "container 1 reaches container 2 through the gateway" \
    grep -q "via 10.77.0.1" <<<"$(ip -n "$NS_c1" route get "$A2")"
assert_eq "$(in_host cat /proc/sys/net/ipv4/ip_forward)" "1" "forwarding is on in the host namespace"
L=$(link_json "$NS_c1" eth0)
assert_json "${L:-null}" "d and d['linkinfo']['info_kind'] == 'veth' and d['address'] == '$(jget "$R1" "d['interfaces'][1]['mac']")'" \
    "container eth0 is a veth with the result MAC"

# --- traffic
check "container 1 pings container 2 ($A2) through the host" pings "$NS_c1" "$A2"
check "container 2 pings container 1 ($A1) through the host" pings "$NS_c2" "$A1"
check "container 1 pings the gateway" pings "$NS_c1" 10.77.0.1
if [[ -n $MASQ_BACKEND ]]; then
    check "container 1 reaches the outside (iptables masquerade)" pings "$NS_c1" 192.0.2.2
    CHAIN_RULES=$(in_host iptables -w -t nat -S POSTROUTING)
    check "POSTROUTING jumps to a CNI- chain for container 1" grep -q -- "-s $A1/32 .* -j CNI-" <<<"$CHAIN_RULES"
else
    log "iptables unusable here: the iptables masquerade checks are skipped"
fi

# --- CHECK on what ADD made
cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$CONF" "$R1")"
assert_rc 0 "CHECK ctr-1 passes"
ip -n "$HOST" route del "$A1/32" dev "$HV1"
cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$CONF" "$R1")"
assert_error_code 101 "CHECK ctr-1 notices the missing host route"
ip -n "$HOST" route add "$A1/32" dev "$HV1" scope host

# --- nftables masquerade on a second network
if nft_ok; then
    CONF6=$(ptp_conf $NET6 10.78.0.0/24 '"ipMasq":true,"ipMasqBackend":"nftables"')
    cni ADD ctr-3 "$NS_c3" eth0 "$CONF6"
    assert_rc 0 "ADD ctr-3 (nftables masquerade)"
    R3=$CNI_OUT
    A3=$(result_addr "$R3")
    check "container 3 reaches the outside (nftables masquerade)" pings "$NS_c3" 192.0.2.2
    check "nft has a masquerade rule for container 3" \
        grep -q "ip saddr $A3 " <<<"$(in_host nft list table inet cni_plugins_masquerade)"
    cni CHECK ctr-3 "$NS_c3" eth0 "$(with_prev "$CONF6" "$R3")"
    assert_rc 0 "CHECK ctr-3 passes"
    cni DEL ctr-3 "$NS_c3" eth0 "$CONF6"
    assert_rc 0 "DEL ctr-3"
    check_not "no nft masquerade rule left for container 3" \
        grep -q "ip saddr $A3 " <<<"$(in_host nft list table inet cni_plugins_masquerade 2>/dev/null)"
    assert_empty "$(reservations "$STORE6")" "no reservation left on $NET6"
else
    log "nft unusable here: the nftables masquerade checks are skipped"
fi

# Without ipMasq nothing is rewritten, so the outside cannot answer: the pings above
# really went through masquerading.
CONF_PLAIN=$(ptp_conf ptpplain 10.79.0.0/24)
cni ADD ctr-4 "$NS_c3" eth1 "$CONF_PLAIN"
assert_rc 0 "ADD ctr-4 (no ipMasq)"
A4=$(result_addr "$CNI_OUT")
check "container 4 pings its gateway" pings "$NS_c3" 10.79.0.1
check_not "container 4 does not reach the outside without ipMasq" pings "$NS_c3" 192.0.2.2
cni DEL ctr-4 "$NS_c3" eth1 "$CONF_PLAIN"
assert_rc 0 "DEL ctr-4"
assert_empty "$(host_routes_matching "$A4")" "no host route to container 4 left"

# --- DEL
cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "DEL ctr-1"
cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "DEL ctr-1 again"
check_not "container 1 no longer has eth0" ip -n "$NS_c1" link show eth0
check_not "host veth 1 is gone" ip -n "$HOST" link show "$HV1"
assert_empty "$(host_routes_matching "$A1")" "no host route to container 1 left"

# DEL after the netns is gone: the namespace goes first (taking the veth pair with it),
# then the runtime calls DEL with the stale path.
NS_c2_PATH=/run/netns/$NS_c2
del_ns "$NS_c2"
cni DEL ctr-2 "$NS_c2_PATH" eth0 "$CONF"
assert_rc 0 "DEL ctr-2 after its netns was deleted"
cni DEL ctr-2 "" eth0 "$CONF"
assert_rc 0 "DEL ctr-2 with an empty CNI_NETNS"

assert_empty "$(links_of_kind "$HOST" veth | grep -v '^out0$')" "no container veth left in the host namespace"
assert_empty "$(host_routes_matching 10.77.0.)" "no route to the container subnet left in the host namespace"
assert_empty "$(ip -n "$HOST" -4 addr show | grep 10.77.0.)" "no gateway address left in the host namespace"
assert_eq "$(ip -n "$HOST" rule show | wc -l)" "3" "the host namespace has only the 3 default ip rules"
assert_empty "$(reservations "$STORE")" "no reservation left on $NET"
if [[ -n $MASQ_BACKEND ]]; then
    IPT_AFTER=$(in_host iptables-save -t nat 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//')
    assert_eq "$IPT_AFTER" "$IPT_BEFORE" "the nat table is back to what it was before the ADDs"
fi
check "the outside namespace is untouched (one address)" test "$(addrs "$NS_out" eth0)" = 192.0.2.2/24

# --- an on-link gateway outside the subnet (as the reference accepts): the container
# reaches it through the host route ptp adds on its link.
mk_ns c4
ONLINK=$(printf '{"cniVersion":"1.0.0","name":"ptponlink","type":"ptp","ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.61.0.0/24","gateway":"169.254.1.1"}]],"routes":[{"dst":"0.0.0.0/0"}]}}' "$T_TMP/data")
cni ADD ctr-onlink "$NS_c4" eth0 "$ONLINK"
assert_rc 0 "ADD with gateway 169.254.1.1 outside subnet 10.61.0.0/24"
check "the container's default route goes via 169.254.1.1" grep -q "default via 169.254.1.1 dev eth0" <<<"$(ip -n "$NS_c4" route show)"
check "the container pings its on-link gateway" pings "$NS_c4" 169.254.1.1
cni DEL ctr-onlink "$NS_c4" eth0 "$ONLINK"
assert_rc 0 "DEL of the on-link-gateway container"
assert_empty "$(reservations "$(store_dir ptponlink)")" "no reservation left on ptponlink"

finish
