# shellcheck shell=bash
# The body of t-portmap-iptables and t-portmap-nftables (set BACKEND first).
#
# Layout, all in namespaces this test makes:
#   c1 (10.90.0.x, fd90::x) ─┐
#                            ├─ bridge cni-pm0 ─ host ─ vout 192.168.78.1/24, fd78::1/64
#   c2 (10.90.0.y)         ──┘                        │ veth
#                                    outside: vin 192.168.78.2/24, fd78::2/64, default via host
# A server in c1 answers "hello <peer address>" on port 80 (both families). portmap
# (chained after bridge, with prevResult) maps host port 8080 to it, 8081 only on
# 192.168.78.1 (hostIP), 9000/udp, the range 8098-8100 to 78-80, and IPv6 8080. The test connects from the outside
# namespace, from the host itself (its own address and 127.0.0.1), from c1 to its own
# mapped port (hairpin: the answer must name the bridge address, i.e. masqueraded) and
# from c2 (this kernel runs br_netfilter, so hairpin needs the bridge's hairpinMode, as
# with the reference); then DEL must restore the ruleset exactly (but for the shared chains the
# reference keeps too), also a second DEL, and a DEL without runtimeConfig.
. "$(dirname "$0")/lib.sh"

setup_host
case $BACKEND in
    iptables)
        iptables_ok || skip "iptables backend: iptables/iptables-save/iptables-restore missing or unusable in a namespace"
        command -v ip6tables >/dev/null || skip "ip6tables missing"
        ;;
    nftables) nft_ok || skip "nftables backend: nft missing or unusable in a namespace" ;;
    *) echo "BACKEND must be iptables or nftables" >&2; exit 2 ;;
esac
mk_ns out
mk_ns c1
mk_ns c2
OUT=$NS_out

ip -n "$HOST" link add vout type veth peer name vin netns "$OUT" || exit 1
in_host sysctl -qw net.ipv6.conf.vout.accept_dad=0
in_ns "$OUT" sysctl -qw net.ipv6.conf.vin.accept_dad=0
ip -n "$HOST" addr add 192.168.78.1/24 dev vout
ip -n "$HOST" addr add fd78::1/64 dev vout
ip -n "$HOST" link set vout up
ip -n "$OUT" addr add 192.168.78.2/24 dev vin
ip -n "$OUT" addr add fd78::2/64 dev vin
ip -n "$OUT" link set vin up
ip -n "$OUT" link set lo up
ip -n "$OUT" route add default via 192.168.78.1
ip -n "$OUT" -6 route add default via fd78::1
in_host sysctl -qw net.ipv6.conf.all.forwarding=1

NET=pmnet
BCONF=$(printf '{"cniVersion":"1.0.0","name":"%s","type":"bridge","bridge":"cni-pm0","isGateway":true,"hairpinMode":true,"ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.90.0.0/24"}],[{"subnet":"fd90::/64"}]],"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]}}' \
    "$NET" "$T_TMP/data")
BCONF4=$(bridge_conf $NET cni-pm0 10.90.0.0/24 '"isGateway":true,"isDefaultGateway":true,"hairpinMode":true')
MAPS='[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
       {"hostPort":8081,"containerPort":80,"protocol":"tcp","hostIP":"192.168.78.1"},
       {"hostPort":9000,"containerPort":9000,"protocol":"udp"},
       {"hostPort":8098,"containerPort":78,"protocol":"tcp","range":3}]'
# pmconf EXTRA: a portmap config of this network with the backend forced.
pmconf() {
    printf '{"cniVersion":"1.0.0","name":"%s","type":"portmap","backend":"%s","capabilities":{"portMappings":true}%s}' \
        "$NET" "$BACKEND" "${1:+,$1}"
}
PM=$(pmconf "\"runtimeConfig\":{\"portMappings\":$MAPS}")
PM_NORC=$(pmconf)

# ruleset: the host's NAT state of this backend, stable across runs (no counters/handles).
ruleset() {
    if [[ $BACKEND == iptables ]]; then
        in_host iptables -t nat -S
        in_host ip6tables -t nat -S
    else
        in_host nft list ruleset 2>/dev/null | grep -v 'handle'
    fi
}

# serve NS: answers "hello <peer>" on [::]:80 (both families) and UDP echo on 9000.
serve() {
    ip -n "$1" link set lo up
    # ip netns exec execs the command, so $! is the server itself.
    ip netns exec "$1" "$PY" -c '
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 80)); s.listen(16)
while True:
    c, a = s.accept()
    peer = a[0][7:] if a[0].startswith("::ffff:") else a[0]
    c.sendall(("hello %s\n" % peer).encode()); c.close()
' </dev/null >/dev/null 2>&1 &
    T_PIDS+=($!)
}

# fetch NS ADDR PORT: the server's answer ("hello PEER"), or nothing within 3 s.
fetch() {
    in_ns "$1" "$PY" -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(s.recv(200).decode().strip())' "$2" "$3" 2>/dev/null
}

BEFORE=$(ruleset)

cni ADD ctr-1 "$NS_c1" eth0 "$BCONF"
assert_rc 0 "bridge ADD ctr-1 (dual-stack)"
R1=$CNI_OUT
A1=$(result_addr "$R1" 0)
A1V6=$(result_addr "$R1" 1)
GW4=10.90.0.1
log "ctr-1: $A1 $A1V6"

serve "$NS_c1"
for _ in $(seq 50); do
    [[ -n $(fetch "$NS_c1" 127.0.0.1 80) ]] && break
    sleep 0.1
done
check "the server in ctr-1 answers locally" test -n "$(fetch "$NS_c1" 127.0.0.1 80)"
check_not "before portmap, the host port answers nothing" test -n "$(fetch "$OUT" 192.168.78.1 8080)"

cni ADD ctr-1 "$NS_c1" eth0 "$(with_prev "$PM" "$R1")"
assert_rc 0 "portmap ADD ctr-1 ($BACKEND)"
assert_json "$CNI_OUT" "d == $R1" "portmap passes prevResult through unchanged"
log "ruleset after ADD:"
ruleset | sed 's/^/#   /'

assert_eq "$(fetch "$OUT" 192.168.78.1 8080)" "hello 192.168.78.2" \
    "outside -> host:8080 reaches ctr-1 (no masquerade: the peer is the outside address)"
assert_eq "$(fetch "$OUT" 192.168.78.1 8081)" "hello 192.168.78.2" "outside -> hostIP 192.168.78.1:8081 reaches ctr-1"
pings_within "$OUT" fd78::1 5
assert_eq "$(fetch "$OUT" fd78::1 8080)" "hello fd78::2" "outside -> [fd78::1]:8080 (IPv6) reaches ctr-1"
assert_eq "$(fetch "$OUT" 192.168.78.1 8100)" "hello 192.168.78.2" "range 8098-8100 -> 78-80: host:8100 reaches port 80"
check_not "range: host:8099 goes to port 79, where nothing listens" test -n "$(fetch "$OUT" 192.168.78.1 8099)"
check_not "8081 is mapped for IPv4 only (its hostIP is IPv4)" test -n "$(fetch "$OUT" fd78::1 8081)"
assert_eq "$(fetch "$HOST" 192.168.78.1 8080)" "hello 192.168.78.1" "host -> its own address:8080 reaches ctr-1 (OUTPUT DNAT)"
assert_eq "$(fetch "$HOST" 127.0.0.1 8080)" "hello $GW4" "host -> 127.0.0.1:8080 reaches ctr-1, masqueraded"
assert_eq "$(fetch "$NS_c1" 192.168.78.1 8080)" "hello $GW4" "hairpin: ctr-1 -> its own mapped port, masqueraded"
assert_eq "$(in_host cat /proc/sys/net/ipv4/conf/cni-pm0/route_localnet)" 1 "route_localnet=1 on the bridge"
if [[ $BACKEND == iptables ]]; then
    NAT=$(in_host iptables -t nat -S)
    check "iptables: a CNI-DN- chain with the reference's dnat comment" \
        grep -qF -- '-m comment --comment "dnat name: \"pmnet\" id: \"ctr-1\"" -m multiport --dports 8080,8081' <<<"$NAT"
    check "iptables: udp 9000 entry rule" grep -qE -- '-A CNI-HOSTPORT-DNAT -p udp .*--dports 9000 -j CNI-DN-' <<<"$NAT"
    check "iptables: POSTROUTING starts with the masquerade-mark jump" \
        grep -qE -- '^-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ' <<<"$NAT"
    check "ip6tables: IPv6 DNAT to [$A1V6]:80" grep -qF -- "--to-destination [$A1V6]:80" <<<"$(in_host ip6tables -t nat -S)"
else
    NFT=$(in_host nft list table ip cni_hostport)
    check "nft: dnat rule for 8080 tagged with the container id (as the reference)" \
        grep -qE "tcp dport 8080 dnat to $A1:80 comment \"ctr-1\"" <<<"$NFT"
    check "nft: hostIP rule" grep -qE "ip daddr 192.168.78.1 tcp dport 8081 dnat to $A1:80" <<<"$NFT"
    check "nft: hairpin masquerade" grep -qE "ip saddr $A1 ip daddr $A1 masquerade" <<<"$NFT"
    check "nft: ip6 table has the IPv6 dnat" grep -qF "dnat to [$A1V6]:80" <<<"$(in_host nft list table ip6 cni_hostport)"
fi

cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$PM" "$R1")"
assert_rc 0 "CHECK ctr-1 passes"

# A second container, IPv4 only; CHECK must not look for IPv6 rules (plugins#819).
cni ADD ctr-2 "$NS_c2" eth0 "$BCONF4"
assert_rc 0 "bridge ADD ctr-2 (IPv4 only)"
R2=$CNI_OUT
A2=$(result_addr "$R2")
if [[ $BACKEND == iptables ]]; then WANT=$GW4; else WANT=$A2; fi
# The iptables rules mark the whole container subnet for masquerading (the reference
# does so), the nft ones only the container itself (so does the reference); br_netfilter
# un-NATs the bridged reply either way.
assert_eq "$(fetch "$NS_c2" 192.168.78.1 8080)" "hello $WANT" "ctr-2 -> host:8080 reaches ctr-1"
MID=$(ruleset)
PM2=$(pmconf '"runtimeConfig":{"portMappings":[{"hostPort":8090,"containerPort":80,"protocol":"tcp"}]}')
cni ADD ctr-2 "$NS_c2" eth0 "$(with_prev "$PM2" "$R2")"
assert_rc 0 "portmap ADD ctr-2"
cni CHECK ctr-2 "$NS_c2" eth0 "$(with_prev "$PM2" "$R2")"
assert_rc 0 "CHECK of an IPv4-only container passes"

# Tampering: remove ctr-2's DNAT; CHECK must notice.
if [[ $BACKEND == iptables ]]; then
    RULE=$(in_host iptables -t nat -S | grep -F -- "--to-destination $A2:80" | head -1)
    [[ -n $RULE ]] && eval "in_host iptables -t nat ${RULE/-A /-D }"
else
    H=$(in_host nft -a list chain ip cni_hostport hostports | grep -F "dnat to $A2:80" | grep -oE 'handle [0-9]+$' | cut -d' ' -f2)
    [[ -n $H ]] && in_host nft delete rule ip cni_hostport hostports handle "$H"
fi
cni CHECK ctr-2 "$NS_c2" eth0 "$(with_prev "$PM2" "$R2")"
assert_error_code 101 "CHECK fails once ctr-2's DNAT rule is gone"

# DEL without runtimeConfig still removes ctr-2's rules (the reference skips it).
cni DEL ctr-2 "$NS_c2" eth0 "$PM_NORC"
assert_rc 0 "portmap DEL ctr-2 without runtimeConfig"
assert_eq "$(ruleset)" "$MID" "after DEL of ctr-2 the ruleset is what it was before its ADD"
cni DEL ctr-2 "$NS_c2" eth0 "$PM_NORC"
assert_rc 0 "second portmap DEL ctr-2"
assert_eq "$(fetch "$OUT" 192.168.78.1 8080)" "hello 192.168.78.2" "ctr-1 is still reachable after ctr-2's DEL"

cni DEL ctr-1 "$NS_c1" eth0 "$(with_prev "$PM" "$R1")"
assert_rc 0 "portmap DEL ctr-1 (with runtimeConfig and prevResult)"
check_not "after DEL, outside -> host:8080 answers nothing" test -n "$(fetch "$OUT" 192.168.78.1 8080)"
cni DEL ctr-1 "$NS_c1" eth0 "$(with_prev "$PM" "$R1")"
assert_rc 0 "second portmap DEL ctr-1"

AFTER=$(ruleset)
# What may stay: the shared skeleton (the reference keeps its shared chains too).
if [[ $BACKEND == iptables ]]; then
    LEFT=$(diff <(printf '%s\n' "$BEFORE") <(printf '%s\n' "$AFTER") | grep '^>' |
        grep -vE -- '^> -N CNI-HOSTPORT-(DNAT|SETMARK|MASQ)$' |
        grep -vF -- '> -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT' |
        grep -vF -- '> -A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT' |
        grep -vF -- '> -A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ' |
        grep -vF -- '> -A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000' |
        grep -vF -- '> -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE')
    check_not "iptables: no CNI-DN- chain is left" grep -q 'CNI-DN-' <<<"$AFTER"
else
    LEFT=$(printf '%s\n' "$AFTER" | grep -E 'dnat|masquerade')
fi
assert_empty "$LEFT" "after the DELs no per-container rule is left"
diff <(printf '%s\n' "$BEFORE") <(printf '%s\n' "$AFTER") | sed 's/^/#   /'

cni DEL ctr-2 "$NS_c2" eth0 "$BCONF4"
assert_rc 0 "bridge DEL ctr-2"
cni DEL ctr-1 "$NS_c1" eth0 "$BCONF"
assert_rc 0 "bridge DEL ctr-1"
assert_empty "$(reservations "$(store_dir $NET)")" "no reservation left"

finish
