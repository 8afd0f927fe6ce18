#!/bin/bash
# Dual-stack bridge with isDefaultGateway, mtu, hairpinMode and a MAC from CNI_ARGS:
# both families configured as the result says (addresses, default routes, gateways on
# the bridge), traffic flows in both, and CHECK passes.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
NET=dsnet
BR=cni-ds0
CONF=$(printf '{"cniVersion":"1.0.0","name":"%s","type":"bridge","bridge":"%s","isDefaultGateway":true,"mtu":1400,"hairpinMode":true,"ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.101.0.0/24"}],[{"subnet":"fd00:101::/64"}]]}}' \
    "$NET" "$BR" "$T_TMP/data")
MAC=0a:58:0a:65:00:09

CNI_ARGS="IgnoreUnknown=1;MAC=$MAC" cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "ADD ctr-1 (MAC from CNI_ARGS)"
R1=$CNI_OUT
cni ADD ctr-2 "$NS_c2" eth0 "$CONF"
assert_rc 0 "ADD ctr-2"
R2=$CNI_OUT

assert_json "$R1" "[ip['address'] for ip in d['ips']] == ['10.101.0.2/24', 'fd00:101::2/64'] or (len(d['ips']) == 2 and d['ips'][0]['address'].startswith('10.101.0.') and d['ips'][1]['address'].startswith('fd00:101::'))" \
    "result has one IPv4 and one IPv6 address"
assert_json "$R1" "all(ip['interface'] == 2 for ip in d['ips'])" "both addresses are on interface 2"
assert_json "$R1" "sorted((r['dst'], r.get('gw')) for r in d['routes']) == [('0.0.0.0/0', '10.101.0.1'), ('::/0', 'fd00:101::1')]" \
    "result has a default route per family via the gateways"
assert_json "$R1" "d['interfaces'][2]['mac'] == '$MAC'" "result reports the MAC from CNI_ARGS"

L=$(link_json "$NS_c1" eth0)
assert_json "${L:-null}" "d and d['address'] == '$MAC' and d['mtu'] == 1400" "container eth0 has the MAC and mtu 1400"
HV1=$(jget "$R1" "d['interfaces'][1]['name']")
L=$(link_json "$HOST" "$HV1")
assert_json "${L:-null}" "d and d['mtu'] == 1400" "host veth has mtu 1400"
PORT=$(in_host bridge -j -d link show dev "$HV1" 2>/dev/null)
assert_json "${PORT:-null}" "d and d[0].get('hairpin') is True" "host veth port has hairpin on"

assert_eq "$(addrs "$NS_c1" eth0 | sort | tr '\n' ' ')" "$(jget "$R1" "' '.join(sorted(ip['address'] for ip in d['ips'])) + ' '")" \
    "container eth0 has exactly the result's addresses"
assert_eq "$(addrs "$HOST" "$BR" | sort | tr '\n' ' ')" "10.101.0.1/24 fd00:101::1/64 " "the bridge has both gateway addresses"
check "container has an IPv4 default route via 10.101.0.1" grep -q "default via 10.101.0.1 dev eth0" <<<"$(ip -n "$NS_c1" -4 route)"
check "container has an IPv6 default route via fd00:101::1" grep -q "default via fd00:101::1 dev eth0" <<<"$(ip -n "$NS_c1" -6 route)"

A2v4=$(result_addr "$R2" 0)
A2v6=$(result_addr "$R2" 1)
check "ctr-1 pings ctr-2 over IPv4" pings "$NS_c1" "$A2v4"
check "ctr-1 pings ctr-2 over IPv6" pings "$NS_c1" "$A2v6"
# The bridge's IPv6 gateway address goes through DAD (about a second) after the ADD.
check "ctr-1 pings the IPv6 gateway (within 5 s)" pings_within "$NS_c1" fd00:101::1 5
check "ctr-2 pings the IPv4 gateway" pings "$NS_c2" 10.101.0.1

cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$CONF" "$R1")"
assert_rc 0 "CHECK ctr-1"
ip -n "$NS_c1" -6 route del default
cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$CONF" "$R1")"
assert_rc nonzero "CHECK fails once the IPv6 default route is gone"

for i in 1 2; do
    ns_var=NS_c$i
    cni DEL ctr-$i "${!ns_var}" eth0 "$CONF"
    assert_rc 0 "DEL ctr-$i"
done
assert_empty "$(reservations "$(store_dir $NET)")" "no reservation left"

finish
