#!/bin/bash
# The full chain bridge -> portmap -> bandwidth -> tuning -> firewall as a conflist in a
# temp NETCONFPATH, driven through `ipcni net add|check|del NET NETNS` inside the test's
# host namespace with CAP_ARGS carrying portMappings and bandwidth (as a runtime does):
# the mapped port answers from an outside namespace, the host veth has the ingress tbf
# and the ifb the egress one, tuning's sysctl is set in the container, the firewall
# accepts the container's address, `net check` passes; after `net del` no per-container
# rule, qdisc, link, reservation or result cache entry is left, and a second del exits 0.
. "$(dirname "$0")/lib.sh"

command -v tc >/dev/null || skip "tc (iproute2) not found"
setup_host
iptables_ok || skip "iptables unusable in a namespace"
mk_ns out
mk_ns c1
OUT=$NS_out
ip -n "$HOST" link add vout type veth peer name vin netns "$OUT" || exit 1
ip -n "$HOST" addr add 192.168.80.1/24 dev vout
ip -n "$HOST" link set vout up
ip -n "$OUT" addr add 192.168.80.2/24 dev vin
ip -n "$OUT" link set vin up
ip -n "$OUT" route add default via 192.168.80.1

NET=chainnet
CONFDIR=$T_TMP/net.d
CACHE=$T_TMP/cache
mkdir -p "$CONFDIR"
cat >"$CONFDIR/10-chain.conflist" <<EOF
{"cniVersion":"1.0.0","name":"$NET","plugins":[
  {"type":"bridge","bridge":"cni-ch0","isGateway":true,"hairpinMode":true,
   "ipam":{"type":"host-local","dataDir":"$T_TMP/data","subnet":"10.93.0.0/24","routes":[{"dst":"0.0.0.0/0"}]}},
  {"type":"portmap","capabilities":{"portMappings":true},"backend":"iptables"},
  {"type":"bandwidth","capabilities":{"bandwidth":true}},
  {"type":"tuning","dataDir":"$T_TMP/tuning","sysctl":{"net.ipv4.conf.eth0.arp_filter":"1"}},
  {"type":"firewall","backend":"iptables"}
]}
EOF
CAP='{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"bandwidth":{"ingressRate":8000000,"ingressBurst":800000,"egressRate":4000000,"egressBurst":800000}}'
ID=ctr-chain

# net CMD [NETNS]: `ipcni net CMD chainnet NETNS` in the host namespace; sets CNI_RC/OUT/ERR.
net() {
    local o="$T_TMP/net.out" e="$T_TMP/net.err"
    ip netns exec "$HOST" env -i PATH="$PATH" IPCNI_LOCK_DIR="$IPCNI_LOCK_DIR" NETCONFPATH="$CONFDIR" \
        CNI_PATH="$IPCNI_BIN" CNI_CACHE_DIR="$CACHE" CNI_CONTAINERID=$ID CAP_ARGS="$CAP" \
        "$IPCNI_BIN/ipcni" net "$1" $NET ${2:+"$2"} >"$o" 2>"$e"
    CNI_RC=$?
    CNI_OUT=$(<"$o")
    CNI_ERR=$(<"$e")
    log "ipcni net $1 $NET ${2:-} -> exit $CNI_RC"
    [[ $CNI_RC != 0 && -n $CNI_OUT ]] && log "  stdout: $CNI_OUT"
    [[ -n $CNI_ERR ]] && log "  stderr: ${CNI_ERR//$'\n'/ | }"
    return 0
}
fetch() {
    in_ns "$1" "$PY" -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(s.recv(200).decode().strip())' "$2" "$3" 2>/dev/null
}
NAT_BEFORE=$(in_host iptables -t nat -S)
FILTER_BEFORE=$(in_host iptables -t filter -S)

net add /run/netns/"$NS_c1"
assert_rc 0 "net add runs the whole chain"
R=$CNI_OUT
A1=$(result_addr "$R")
HV=$(jget "$R" "d['interfaces'][1]['name']")
IFB=$(jget "$R" "[i['name'] for i in d['interfaces'] if i['name'].startswith('bwp')][0]")
log "container $A1, host veth $HV, ifb $IFB"
check "the result names the container address" test -n "$A1"
check "the result appends bandwidth's ifb" test -n "$IFB"
CACHED="$CACHE/results/$NET-$ID-eth0"
check "the result is cached at $CACHED" test -f "$CACHED"

ip -n "$NS_c1" link set lo up
ip netns exec "$NS_c1" "$PY" -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(16)
while True:
    c, a = s.accept(); c.sendall(("hello %s\n" % a[0]).encode()); c.close()
' </dev/null >/dev/null 2>&1 &
T_PIDS+=($!)
for _ in $(seq 50); do [[ -n $(fetch "$NS_c1" 127.0.0.1 80) ]] && break; sleep 0.1; done

assert_eq "$(fetch "$OUT" 192.168.80.1 8080)" "hello 192.168.80.2" "portmap: outside -> host:8080 reaches the container"
assert_eq "$(fetch "$NS_c1" 192.168.80.1 8080)" "hello 10.93.0.1" "portmap: hairpin, masqueraded"
check "bandwidth: tbf on the host veth (ingress limit)" \
    jtrue "$(in_host tc -j qdisc show dev "$HV")" "any(q['kind'] == 'tbf' for q in d)"
check "bandwidth: tbf on the ifb (egress limit)" \
    jtrue "$(in_host tc -j qdisc show dev "$IFB")" "any(q['kind'] == 'tbf' for q in d)"
assert_eq "$(in_ns "$NS_c1" cat /proc/sys/net/ipv4/conf/eth0/arp_filter)" 1 "tuning: arp_filter=1 in the container"
check "firewall: CNI-FORWARD accepts the container's traffic" \
    grep -qE -- "^-A CNI-FORWARD -s $A1/32 " <<<"$(in_host iptables -t filter -S)"

net check /run/netns/"$NS_c1"
assert_rc 0 "net check passes"
RULE=$(in_host iptables -t nat -S | grep -F -- "--to-destination $A1:80" | head -1)
eval "in_host iptables -t nat ${RULE/-A /-D }"
net check /run/netns/"$NS_c1"
assert_rc nonzero "net check fails once portmap's DNAT rule is gone"

net del /run/netns/"$NS_c1"
assert_rc 0 "net del runs the chain in reverse"
check_not "after del, the mapped port answers nothing" test -n "$(fetch "$OUT" 192.168.80.1 8080)"
NAT=$(in_host iptables -t nat -S)
check_not "no CNI-DN- chain is left" grep -q 'CNI-DN-' <<<"$NAT"
LEFT=$(diff <(printf '%s\n' "$NAT_BEFORE") <(printf '%s\n' "$NAT") | grep '^>' | grep -vE -- 'CNI-HOSTPORT-(DNAT|SETMARK|MASQ)')
assert_empty "$LEFT" "nat: only portmap's shared chains were added"
FILTER=$(in_host iptables -t filter -S)
check_not "filter: no rule for $A1 is left" grep -qF -- "$A1/32" <<<"$FILTER"
LEFT=$(diff <(printf '%s\n' "$FILTER_BEFORE") <(printf '%s\n' "$FILTER") | grep '^>' | grep -vE -- 'CNI-(FORWARD|ADMIN)')
assert_empty "$LEFT" "filter: only the firewall's shared chains were added"
assert_empty "$(links_of_kind "$HOST" veth | grep -v '^vout$')" "no host veth is left"
assert_empty "$(links_of_kind "$HOST" ifb)" "no ifb is left"
check_not "no qdisc names the old host veth" in_host tc qdisc show dev "$HV"
assert_empty "$(reservations "$T_TMP/data/$NET")" "no reservation left"
check_not "the result cache entry is gone" test -e "$CACHED"

net del /run/netns/"$NS_c1"
assert_rc 0 "a second net del exits 0"
finish
