#!/bin/bash
# bandwidth, chained after bridge: an ingress limit puts a tbf with the configured rate on
# the host veth; an egress limit makes the ifb bwp<hash> (up, the veth's MTU), an ingress
# qdisc on the veth with a u32 filter redirecting to the ifb, and a tbf with the egress
# rate on the ifb; the result appends the ifb; CHECK passes; the limits also come from
# runtimeConfig.bandwidth; DEL removes the ifb and the veth's qdiscs, and a second DEL
# exits 0; a burst smaller than a frame, a rate without burst and a missing prevResult are
# refused with code 7 and leave nothing behind; versions before 0.3.0 are refused.
. "$(dirname "$0")/lib.sh"

command -v tc >/dev/null || skip "tc (iproute2) not found"

setup_host
mk_ns c1
mk_ns c2
NET=bwnet
BCONF=$(bridge_conf $NET cni-bw0 10.94.0.0/24)

# bwconf EXTRA_JSON: a bandwidth config of this network
bwconf() { printf '{"cniVersion":"1.0.0","name":"%s","type":"bandwidth"%s}' "$NET" "${1:+,$1}"; }
# qdisc_json DEV: `tc -j qdisc show dev DEV` in the host namespace
qdisc_json() { in_host tc -j qdisc show dev "$1"; }
ifb_of() { jget "$1" "[i['name'] for i in d['interfaces'] if i['name'].startswith('bwp')][0]"; }

cni ADD ctr-1 "$NS_c1" eth0 "$BCONF"
assert_rc 0 "bridge ADD ctr-1"
R1=$CNI_OUT
HV1=$(jget "$R1" "d['interfaces'][1]['name']")

LIMITS='"ingressRate":1000000,"ingressBurst":160000,"egressRate":2000000,"egressBurst":240000'
C1=$(with_prev "$(bwconf "$LIMITS")" "$R1")
cni ADD ctr-1 "$NS_c1" eth0 "$C1"
assert_rc 0 "bandwidth ADD ctr-1"
BR1=$CNI_OUT
assert_json "$BR1" "len(d['interfaces']) == 4 and d['interfaces'][3]['name'].startswith('bwp') and d['interfaces'][3]['mac']" \
    "the result appends the ifb with its MAC"
IFB=$(ifb_of "$BR1")
log "host veth $HV1, ifb $IFB"

Q=$(qdisc_json "$HV1")
assert_json "$Q" "any(q['kind'] == 'tbf' and q.get('root') and q['options']['rate'] == 125000 and q['options']['burst'] == 20000 for q in d)" \
    "the host veth has a root tbf at 1 Mbit/s (125000 B/s), burst 20000 B"
assert_json "$Q" "any(q['kind'] == 'ingress' for q in d)" "the host veth has an ingress qdisc"
F=$(in_host tc -j filter show dev "$HV1" parent ffff:)
assert_json "$F" "any(a.get('kind') == 'mirred' and a.get('to_dev') == '$IFB' for f in d for a in f.get('options', {}).get('actions', []))" \
    "a filter on the veth's ingress redirects to $IFB"
L=$(link_json "$HOST" "$IFB")
assert_json "${L:-null}" "d and d['linkinfo']['info_kind'] == 'ifb' and 'UP' in d['flags'] and d['mtu'] == 1500" \
    "$IFB is an ifb, up, with the veth's MTU"
assert_json "${L:-null}" "d and d['address'] == '$(jget "$BR1" "d['interfaces'][3]['mac']")'" "$IFB has the MAC of the result"
assert_json "$(qdisc_json "$IFB")" "any(q['kind'] == 'tbf' and q['options']['rate'] == 250000 and q['options']['burst'] == 30000 for q in d)" \
    "$IFB has a root tbf at 2 Mbit/s (250000 B/s), burst 30000 B"

cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$(bwconf "$LIMITS")" "$BR1")"
assert_rc 0 "CHECK after ADD"
in_host tc qdisc del dev "$IFB" root
cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$(bwconf "$LIMITS")" "$BR1")"
assert_error_code 101 "CHECK after the ifb's tbf was removed by hand"

cni DEL ctr-1 "$NS_c1" eth0 "$(with_prev "$(bwconf "$LIMITS")" "$BR1")"
assert_rc 0 "bandwidth DEL ctr-1"
check_not "DEL removed $IFB" ip -n "$HOST" link show dev "$IFB"
Q=$(qdisc_json "$HV1")
assert_json "$Q" "not any(q['kind'] in ('tbf', 'ingress') for q in d)" "DEL removed the tbf and the ingress qdisc from the host veth"
cni DEL ctr-1 "$NS_c1" eth0 "$(with_prev "$(bwconf "$LIMITS")" "$BR1")"
assert_rc 0 "a second bandwidth DEL exits 0"

# --- limits from runtimeConfig.bandwidth, ingress only
RC='"capabilities":{"bandwidth":true},"runtimeConfig":{"bandwidth":{"ingressRate":8000000,"ingressBurst":800000}}'
cni ADD ctr-1 "$NS_c1" eth0 "$(with_prev "$(bwconf "$RC")" "$R1")"
assert_rc 0 "bandwidth ADD with runtimeConfig.bandwidth"
assert_json "$CNI_OUT" "len(d['interfaces']) == 3" "no ifb without an egress limit"
assert_json "$(qdisc_json "$HV1")" "any(q['kind'] == 'tbf' and q['options']['rate'] == 1000000 for q in d)" \
    "the host veth's tbf has the runtimeConfig rate (1000000 B/s)"
check_not "no ifb was made" ip -n "$HOST" link show dev "$IFB"
cni DEL ctr-1 "$NS_c1" eth0 "$(with_prev "$(bwconf "$RC")" "$R1")"
assert_rc 0 "DEL of the runtimeConfig attachment"
assert_json "$(qdisc_json "$HV1")" "not any(q['kind'] == 'tbf' for q in d)" "... removed the tbf"

# --- refused input leaves nothing
cni ADD ctr-2 "$NS_c2" eth0 "$BCONF"
assert_rc 0 "bridge ADD ctr-2"
R2=$CNI_OUT
HV2=$(jget "$R2" "d['interfaces'][1]['name']")
LINKS_BEFORE=$(links "$HOST")
cni ADD ctr-2 "$NS_c2" eth0 "$(with_prev "$(bwconf '"egressRate":1000000,"egressBurst":8000')" "$R2")"
assert_error_code 7 "a burst of 1000 bytes (below one 1514-byte frame) is refused"
assert_json "$CNI_OUT" "'frame' in d['msg']" "... and the message says why"
cni ADD ctr-2 "$NS_c2" eth0 "$(with_prev "$(bwconf '"ingressRate":1000000')" "$R2")"
assert_error_code 7 "a rate without a burst is refused"
cni ADD ctr-2 "$NS_c2" eth0 "$(bwconf "$LIMITS")"
assert_error_code 7 "ADD without prevResult is refused"
assert_eq "$(links "$HOST")" "$LINKS_BEFORE" "the refused ADDs made no link"
assert_json "$(qdisc_json "$HV2")" "not any(q['kind'] in ('tbf', 'ingress') for q in d)" "... and no qdisc"
cni ADD ctr-2 "$NS_c2" eth0 "$(with_prev "$(printf '{"cniVersion":"0.2.0","name":"%s","type":"bandwidth",%s}' "$NET" "$LIMITS")" '{"cniVersion":"0.2.0","ip4":{"ip":"10.94.0.9/24"}}')"
assert_error_code 1 "cniVersion 0.2.0 is refused (code 1)"

finish
