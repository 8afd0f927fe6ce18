#!/bin/bash
# sbr, chained after bridge (with a default gateway): ADD adds `from ADDR lookup 100` in
# the container, table 100 holds the default route via the gateway and the subnet route,
# and eth0's main-table routes are gone; the container still reaches the gateway (its
# source address selects table 100); CHECK passes; DEL removes the rule and empties table
# 100; a second DEL and a DEL after the netns was deleted exit 0. With `"table": 200` only
# the rule is added (and removed by DEL). A table id already in use is skipped. Without
# prevResult ADD is refused with code 7.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
NET=sbrnet
BCONF=$(bridge_conf $NET cni-sbr0 10.95.0.0/24 '"isDefaultGateway":true')

sbrconf() { printf '{"cniVersion":"1.0.0","name":"%s","type":"sbr"%s}' "$NET" "${1:+,$1}"; }
rules_of() { ip -n "$1" rule show; }
table_of() { ip -n "$1" route show table "$2" 2>/dev/null; }

cni ADD ctr-1 "$NS_c1" eth0 "$BCONF"
assert_rc 0 "bridge ADD ctr-1"
R1=$CNI_OUT
A1=$(result_addr "$R1")

S1=$(with_prev "$(sbrconf)" "$R1")
cni ADD ctr-1 "$NS_c1" eth0 "$S1"
assert_rc 0 "sbr ADD ctr-1"
assert_json "$CNI_OUT" "d == $(printf '%s' "$R1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin))')" \
    "the result is prevResult"
check "rule: from $A1 lookup 100" grep -q "from $A1 lookup 100" <<<"$(rules_of "$NS_c1")"
T100=$(table_of "$NS_c1" 100)
log "table 100: ${T100//$'\n'/ | }"
check "table 100 has the default route via 10.95.0.1" grep -q "^default via 10.95.0.1 dev eth0" <<<"$T100"
check "table 100 has the subnet route" grep -q "^10.95.0.0/24 dev eth0" <<<"$T100"
assert_empty "$(ip -n "$NS_c1" -4 route show table main dev eth0)" "eth0 has no IPv4 route left in the main table"
# With no main-table route the source must be chosen: it is what selects table 100.
check "the container reaches the gateway from $A1" ip netns exec "$NS_c1" ping -n -q -c 1 -W 2 -I "$A1" 10.95.0.1

cni CHECK ctr-1 "$NS_c1" eth0 "$S1"
assert_rc 0 "CHECK after ADD"

cni DEL ctr-1 "$NS_c1" eth0 "$S1"
assert_rc 0 "sbr DEL ctr-1"
check_not "DEL removed the rule" grep -q "from $A1" <<<"$(rules_of "$NS_c1")"
assert_empty "$(table_of "$NS_c1" 100)" "DEL emptied table 100"
cni CHECK ctr-1 "$NS_c1" eth0 "$S1"
assert_error_code 101 "CHECK after DEL finds no rule"
cni DEL ctr-1 "$NS_c1" eth0 "$S1"
assert_rc 0 "a second sbr DEL exits 0"

# --- a fixed table: only the rule
ST=$(with_prev "$(sbrconf '"table":200')" "$R1")
cni ADD ctr-1 "$NS_c1" eth0 "$ST"
assert_rc 0 "sbr ADD with table 200"
check "rule: from $A1 lookup 200" grep -q "from $A1 lookup 200" <<<"$(rules_of "$NS_c1")"
assert_empty "$(table_of "$NS_c1" 200)" "nothing was added to table 200"
cni DEL ctr-1 "$NS_c1" eth0 "$ST"
assert_rc 0 "sbr DEL with table 200"
check_not "DEL removed the table-200 rule" grep -q "from $A1" <<<"$(rules_of "$NS_c1")"

# --- a used table id is skipped; DEL after the netns is gone
cni ADD ctr-2 "$NS_c2" eth0 "$BCONF"
assert_rc 0 "bridge ADD ctr-2"
R2=$CNI_OUT
A2=$(result_addr "$R2")
ip -n "$NS_c2" rule add from 192.0.2.1 table 100
cni ADD ctr-2 "$NS_c2" eth0 "$(with_prev "$(sbrconf)" "$R2")"
assert_rc 0 "sbr ADD ctr-2 with table 100 taken"
check "rule: from $A2 lookup 101" grep -q "from $A2 lookup 101" <<<"$(rules_of "$NS_c2")"
del_ns "$NS_c2"
cni DEL ctr-2 "$NS_c2" eth0 "$(with_prev "$(sbrconf)" "$R2")"
assert_rc 0 "sbr DEL after the netns was deleted exits 0"

cni ADD ctr-1 "$NS_c1" eth0 "$(sbrconf)"
assert_error_code 7 "ADD without prevResult is refused"

finish
