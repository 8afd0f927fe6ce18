#!/bin/bash
# containers/examples/containerd-ipcni.conflist (containerd's 10-containerd-net shape:
# dual-stack bridge + host-local + portmap with the portMappings capability), run as a list
# by `ipcni net add|del` the way containerd's CRI plugin runs it: the container gets both
# addresses and default routes, hostPort 8080 reaches its httpd over IPv4 (bridge address
# and 127.0.0.1) and IPv6, and DEL leaves no veth, rule, reservation or cache entry.
. "$(dirname "$0")/lib.sh"

EXAMPLE=$T_ROOT/containers/examples/containerd-ipcni.conflist
[[ -x /bin/busybox ]] || skip "busybox (httpd, wget) not installed"

setup_host
iptables_ok || skip "iptables does not work in a network namespace here"
mk_ns c1
NET=containerd-net
mkdir -p "$T_TMP/net" "$T_TMP/cache" "$T_TMP/www"
# The example as it is, with only host-local's store moved into this test's temp dir.
"$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))
c["plugins"][0]["ipam"]["dataDir"] = sys.argv[2]
json.dump(c, open(sys.argv[3], "w"))' "$EXAMPLE" "$T_TMP/data" "$T_TMP/net/10-containerd-net.conflist" || exit 1
BR=$(jget "$(<"$EXAMPLE")" 'd["plugins"][0]["bridge"]')
STORE=$T_TMP/data/$NET
CAP='{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}'

# net CMD: `ipcni net CMD containerd-net /run/netns/c1` in the host namespace, as CRI would.
net() {
    CNI_RC=0
    CNI_OUT=$(in_host env -i PATH="$PATH" IPCNI_LOCK_DIR="$IPCNI_LOCK_DIR" NETCONFPATH="$T_TMP/net" \
        CNI_PATH="$IPCNI_BIN" CNI_CACHE_DIR="$T_TMP/cache" CNI_CONTAINERID=ctr-containerd CNI_IFNAME=eth0 \
        CAP_ARGS="$CAP" "$IPCNI_BIN/ipcni" net "$1" "$NET" "/run/netns/$NS_c1" 2>"$T_TMP/net.err") || CNI_RC=$?
    CNI_ERR=$(<"$T_TMP/net.err")
    log "ipcni net $1 $NET -> exit $CNI_RC"
    [[ -n $CNI_ERR ]] && log "  stderr: ${CNI_ERR//$'\n'/ | }"
    return 0
}

net add
assert_rc 0 "ipcni net add runs the example list"
R=$CNI_OUT
assert_json "$R" "d['cniVersion'] == '1.0.0' and [i['address'] for i in d['ips']] == ['10.88.0.2/16', 'fd00:10:88::2/64']" \
    "the result has one address from each range"
assert_eq "$(addrs "$NS_c1" eth0 | sort | xargs)" "10.88.0.2/16 fd00:10:88::2/64" "eth0 has both addresses"
check "IPv4 default route via 10.88.0.1" grep -q "^default via 10.88.0.1 dev eth0" <<<"$(ip -n "$NS_c1" route)"
check "IPv6 default route via fd00:10:88::1" grep -q "^default via fd00:10:88::1 dev eth0" <<<"$(ip -n "$NS_c1" -6 route)"
L=$(link_json "$HOST" "$BR")
assert_json "${L:-null}" "d and 'PROMISC' in d['flags']" "the bridge $BR is promiscuous (promiscMode)"

ip -n "$NS_c1" link set lo up
printf 'containerd page\n' >"$T_TMP/www/index.html"
# ip netns exec execs httpd, so $! is its pid and the cleanup trap ends it.
ip netns exec "$NS_c1" /bin/busybox httpd -f -p 80 -h "$T_TMP/www" &
T_PIDS+=($!)
pings_within "$HOST" fd00:10:88::2 5 # IPv6 duplicate address detection
fetch() { in_host timeout 10 /bin/busybox wget -q -Y off -O - "$1" 2>&1; }
assert_eq "$(fetch http://10.88.0.1:8080/)" "containerd page" "hostPort 8080 answers on the bridge address"
assert_eq "$(fetch http://127.0.0.1:8080/)" "containerd page" "hostPort 8080 answers on 127.0.0.1"
assert_eq "$(fetch "http://[fd00:10:88::1]:8080/")" "containerd page" "hostPort 8080 answers over IPv6"

net del
assert_rc 0 "ipcni net del"
assert_empty "$(links_of_kind "$HOST" veth)" "no veth is left in the host namespace"
assert_empty "$(in_host iptables-save | grep -E -e 'ctr-containerd' -e '10\.88\.0\.2[^0-9]' -e '^:CNI-(DN-)?[0-9a-f]{16,}')" \
    "no IPv4 rule or chain of the container is left"
assert_empty "$(in_host ip6tables-save | grep -E -e 'ctr-containerd' -e 'fd00:10:88::2[^0-9a-f]' -e '^:CNI-(DN-)?[0-9a-f]{16,}')" \
    "no IPv6 rule or chain of the container is left"
assert_empty "$(reservations "$STORE")" "no address is reserved"
assert_empty "$(ls "$T_TMP/cache/results" 2>/dev/null)" "the result cache entry is gone"
finish
