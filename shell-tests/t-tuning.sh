#!/bin/bash
# tuning, chained after bridge: sysctls (net.core.somaxconn and the interface's
# rp_filter through IFNAME, also for an interface named with a dot), MAC, MTU, promisc,
# allmulticast and txqueuelen change in the container; the result carries the new MAC;
# CHECK passes, and fails once a value is changed by hand; DEL puts every previous value
# back and removes the saved state; a failing sysctl rolls back the ones written before
# it; a sysctl outside net.* is refused; DEL after the netns was deleted exits 0.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
NET=tunenet
DATA=$T_TMP/tuning
BCONF=$(bridge_conf $NET cni-tune0 10.93.0.0/24)

# tconf EXTRA_JSON: a tuning config keeping its state in $DATA
tconf() {
    printf '{"cniVersion":"1.0.0","name":"%s","type":"tuning","dataDir":"%s"%s}' "$NET" "$DATA" "${1:+,$1}"
}
sysctl_in() { ip netns exec "$1" cat "/proc/sys/$2"; }
# attrs NS DEV: "mtu mac promisc allmulti txqlen" as ip reports them
attrs() {
    ip -n "$1" -j -d link show dev "$2" | "$PY" -c '
import json, sys
l = json.load(sys.stdin)[0]
print(l["mtu"], l["address"], "PROMISC" in l["flags"], "ALLMULTI" in l["flags"], l["txqlen"])'
}

cni ADD ctr-1 "$NS_c1" eth0 "$BCONF"
assert_rc 0 "bridge ADD ctr-1"
R1=$CNI_OUT

SOMAX_BEFORE=$(sysctl_in "$NS_c1" net/core/somaxconn)
RPF_BEFORE=$(sysctl_in "$NS_c1" net/ipv4/conf/eth0/rp_filter)
ATTRS_BEFORE=$(attrs "$NS_c1" eth0)
log "before: somaxconn=$SOMAX_BEFORE rp_filter=$RPF_BEFORE attrs=$ATTRS_BEFORE"

TCONF=$(tconf '"sysctl":{"net.core.somaxconn":"777","net.ipv4.conf.IFNAME.rp_filter":"2"},"mac":"c2:11:22:33:44:55","mtu":1400,"promisc":true,"allmulti":true,"txQLen":321')
T1=$(with_prev "$TCONF" "$R1")
cni ADD ctr-1 "$NS_c1" eth0 "$T1"
assert_rc 0 "tuning ADD ctr-1"
TR1=$CNI_OUT
assert_eq "$(sysctl_in "$NS_c1" net/core/somaxconn)" 777 "somaxconn is 777 in the container"
assert_eq "$(sysctl_in "$NS_c1" net/ipv4/conf/eth0/rp_filter)" 2 "IFNAME's rp_filter is 2"
assert_eq "$(attrs "$NS_c1" eth0)" "1400 c2:11:22:33:44:55 True True 321" "mtu, mac, promisc, allmulti and txqlen changed"
assert_json "$TR1" "[i['mac'] for i in d['interfaces'] if i['name'] == 'eth0' and i.get('sandbox')] == ['c2:11:22:33:44:55']" \
    "the result has the new MAC on eth0"
assert_json "$TR1" "d['ips'] == $(jget "$R1" "d['ips']")" "the result keeps prevResult's addresses"
check "the saved values are in dataDir" test -s "$DATA/$NET/ctr-1@eth0.json"

cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$TCONF" "$TR1")"
assert_rc 0 "CHECK after ADD"
ip -n "$NS_c1" link set dev eth0 mtu 1300
cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$TCONF" "$TR1")"
assert_error_code 101 "CHECK after the MTU was changed by hand"
ip -n "$NS_c1" link set dev eth0 mtu 1400

cni DEL ctr-1 "$NS_c1" eth0 "$(with_prev "$TCONF" "$TR1")"
assert_rc 0 "tuning DEL ctr-1"
assert_eq "$(sysctl_in "$NS_c1" net/core/somaxconn)" "$SOMAX_BEFORE" "DEL restored somaxconn"
assert_eq "$(sysctl_in "$NS_c1" net/ipv4/conf/eth0/rp_filter)" "$RPF_BEFORE" "DEL restored rp_filter"
assert_eq "$(attrs "$NS_c1" eth0)" "$ATTRS_BEFORE" "DEL restored mtu, mac, promisc, allmulti and txqlen"
check_not "DEL removed the saved values" test -e "$DATA/$NET/ctr-1@eth0.json"
cni DEL ctr-1 "$NS_c1" eth0 "$(with_prev "$TCONF" "$TR1")"
assert_rc 0 "a second tuning DEL exits 0"

# --- rollback: the second sysctl (in name order) cannot be written
BADCONF=$(with_prev "$(tconf '"sysctl":{"net.core.somaxconn":"888","net.ipv4.conf.IFNAME.rp_filter":"x"}')" "$R1")
cni ADD ctr-1 "$NS_c1" eth0 "$BADCONF"
assert_rc nonzero "tuning ADD with a non-numeric rp_filter value fails"
assert_eq "$(sysctl_in "$NS_c1" net/core/somaxconn)" "$SOMAX_BEFORE" "the failed ADD put somaxconn back"
check_not "the failed ADD left no saved values" test -e "$DATA/$NET/ctr-1@eth0.json"

# --- refused input
cni ADD ctr-1 "$NS_c1" eth0 "$(with_prev "$(tconf '"sysctl":{"kernel.hostname":"x"}')" "$R1")"
assert_error_code 7 "a sysctl outside net.* is refused"
cni ADD ctr-1 "$NS_c1" eth0 "$(tconf '"mtu":1400')"
assert_error_code 7 "ADD without prevResult is refused"

# --- an interface name with a dot
cni ADD ctr-2 "$NS_c2" eth0.5 "$BCONF"
assert_rc 0 "bridge ADD ctr-2 as eth0.5"
R2=$CNI_OUT
RPF2_BEFORE=$(sysctl_in "$NS_c2" net/ipv4/conf/eth0.5/rp_filter)
T2=$(with_prev "$(tconf '"sysctl":{"net.ipv4.conf.IFNAME.rp_filter":"2","net/ipv4/conf/eth0.5/arp_ignore":"1"}')" "$R2")
cni ADD ctr-2 "$NS_c2" eth0.5 "$T2"
assert_rc 0 "tuning ADD on eth0.5"
assert_eq "$(sysctl_in "$NS_c2" net/ipv4/conf/eth0.5/rp_filter)" 2 "eth0.5's rp_filter is 2 (IFNAME with a dot)"
assert_eq "$(sysctl_in "$NS_c2" net/ipv4/conf/eth0.5/arp_ignore)" 1 "eth0.5's arp_ignore is 1 (slash form)"
cni CHECK ctr-2 "$NS_c2" eth0.5 "$T2"
assert_rc 0 "CHECK on eth0.5"
del_ns "$NS_c2"
cni DEL ctr-2 "$NS_c2" eth0.5 "$T2"
assert_rc 0 "tuning DEL after the netns was deleted exits 0"
check_not "... and drops the saved values" test -e "$DATA/$NET/ctr-2@eth0.5.json"
log "rp_filter of eth0.5 before: $RPF2_BEFORE"

finish
