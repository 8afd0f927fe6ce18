#!/bin/bash
# static IPAM, delegated in-process by bridge and ptp: the configured address and route
# are in the container and it pings its gateway; runtimeConfig.ips replaces the
# configured addresses; CHECK compares prevResult with the configuration; with ptp a /32
# address still reaches its gateway; DEL leaves nothing behind.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
mk_ns c3
BR=cni-st0

# static_bridge_conf [EXTRA_JSON_FIELDS]: bridge (isGateway) + static IPAM, cniVersion 1.0.0.
static_bridge_conf() {
    printf '{"cniVersion":"1.0.0","name":"staticnet","type":"bridge","bridge":"%s","isGateway":true%s,"ipam":{"type":"static","addresses":[{"address":"10.66.0.5/24","gateway":"10.66.0.1"}],"routes":[{"dst":"0.0.0.0/0"},{"dst":"198.51.100.0/24","gw":"10.66.0.254"}],"dns":{"nameservers":["10.66.0.53"],"search":["static.test"]}}}' \
        "$BR" "${1:+,$1}"
}
CONF=$(static_bridge_conf)

# --- bridge + static
cni ADD st-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "ADD st-1 (bridge, static IPAM)"
R1=$CNI_OUT
assert_json "$R1" "d['ips'] == [{'address': '10.66.0.5/24', 'gateway': '10.66.0.1', 'interface': 2}]" \
    "the result has the configured address and gateway at interface 2"
assert_json "$R1" "d['dns']['nameservers'] == ['10.66.0.53'] and d['dns']['search'] == ['static.test']" \
    "the result carries the configured DNS"
assert_eq "$(addrs "$NS_c1" eth0)" "10.66.0.5/24" "container eth0 has the static address"
C1_ROUTES=$(ip -n "$NS_c1" -4 route show dev eth0)
check "container has the default route via the gateway" grep -q "^default via 10.66.0.1" <<<"$C1_ROUTES"
check "container has the configured route with its own gateway" grep -q "^198.51.100.0/24 via 10.66.0.254" <<<"$C1_ROUTES"
assert_eq "$(addrs "$HOST" $BR)" "10.66.0.1/24" "the bridge has the gateway address"
check "container pings the gateway 10.66.0.1" pings "$NS_c1" 10.66.0.1

# runtimeConfig.ips replaces the configured address.
CONF2=$(static_bridge_conf '"runtimeConfig":{"ips":["10.66.0.6/24"]}')
cni ADD st-2 "$NS_c2" eth0 "$CONF2"
assert_rc 0 "ADD st-2 with runtimeConfig.ips"
R2=$CNI_OUT
assert_json "$R2" "[ip['address'] for ip in d['ips']] == ['10.66.0.6/24']" "runtimeConfig.ips replaced the configured address"
assert_eq "$(addrs "$NS_c2" eth0)" "10.66.0.6/24" "container 2 eth0 has the runtimeConfig address"
check "container 2 pings container 1" pings "$NS_c2" 10.66.0.5

# --- CHECK: delegated to static in-process, which compares prevResult with the config.
cni CHECK st-1 "$NS_c1" eth0 "$(with_prev "$CONF" "$R1")"
assert_rc 0 "CHECK st-1 passes"
BAD=$("$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); r["ips"][0]["gateway"]="10.66.0.9"; print(json.dumps(r))' "$R1")
cni CHECK st-1 "$NS_c1" eth0 "$(with_prev "$CONF" "$BAD")"
assert_error_code 101 "CHECK st-1 with a prevResult gateway the config does not name"

# --- the static plugin on its own
plugin_raw static "$CONF" CNI_COMMAND=ADD CNI_CONTAINERID=st-x CNI_NETNS=/run/netns/$NS_c3 CNI_IFNAME=eth0 \
    CNI_PATH="$IPCNI_BIN" "CNI_ARGS=IgnoreUnknown=1;IP=10.67.0.8/24;GATEWAY=10.67.0.1"
assert_rc 0 "static ADD run directly"
assert_json "$CNI_OUT" "[(ip['address'], ip.get('gateway')) for ip in d['ips']] == [('10.66.0.5/24', '10.66.0.1'), ('10.67.0.8/24', '10.67.0.1')]" \
    "CNI_ARGS IP= is appended with its GATEWAY="
assert_eq "$(links "$NS_c3")" "lo" "static ADD changes nothing in the namespace"

# --- ptp + static with a /32 address: no connected route, the gateway is still reachable
PTP_CONF='{"cniVersion":"1.0.0","name":"staticptp","type":"ptp","ipam":{"type":"static","addresses":[{"address":"10.68.0.9/32","gateway":"10.68.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]}}'
cni ADD st-3 "$NS_c3" eth0 "$PTP_CONF"
assert_rc 0 "ADD st-3 (ptp, static /32)"
R3=$CNI_OUT
assert_eq "$(addrs "$NS_c3" eth0)" "10.68.0.9/32" "container 3 has the /32 address"
check "container 3 pings its gateway 10.68.0.1" pings "$NS_c3" 10.68.0.1
cni CHECK st-3 "$NS_c3" eth0 "$(with_prev "$PTP_CONF" "$R3")"
assert_rc 0 "CHECK st-3 passes"

# --- DEL
cni DEL st-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "DEL st-1"
cni DEL st-2 "$NS_c2" eth0 "$CONF2"
assert_rc 0 "DEL st-2"
cni DEL st-3 "$NS_c3" eth0 "$PTP_CONF"
assert_rc 0 "DEL st-3"
cni DEL st-3 "$NS_c3" eth0 "$PTP_CONF"
assert_rc 0 "DEL st-3 again"
assert_empty "$(links_of_kind "$HOST" veth)" "no veth left in the host namespace"
check_not "container 1 no longer has eth0" ip -n "$NS_c1" link show eth0
assert_empty "$(ip -n "$HOST" -4 route show | grep -F 10.68.0.)" "no host route to the ptp container left"

finish
