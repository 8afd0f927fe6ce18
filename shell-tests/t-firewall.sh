#!/bin/bash
# firewall, chained after bridge, both backends. The host namespace drops forwarded
# traffic (iptables: FORWARD policy DROP; nftables: the plugin's own forward chain set to
# policy drop); a container with the firewall plugin reaches the outside namespace, one
# without does not. iptables: FORWARD jumps to CNI-FORWARD first, CNI-FORWARD jumps to
# CNI-ADMIN (or iptablesAdminChainName) first, an admin rule there overrides the
# container's accept; CHECK passes and fails once a rule is removed; ingressPolicy
# same-bridge adds the isolation chains; DEL (also without prevResult) restores the
# filter table as it was but for the shared chains, and a second DEL exits 0.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns out
mk_ns c1
mk_ns c2
OUT=$NS_out
ip -n "$HOST" link add vout type veth peer name vin netns "$OUT" || exit 1
ip -n "$HOST" addr add 192.168.79.1/24 dev vout
ip -n "$HOST" link set vout up
ip -n "$OUT" addr add 192.168.79.2/24 dev vin
ip -n "$OUT" link set vin up
ip -n "$OUT" route add default via 192.168.79.1

NET=fwnet
BCONF=$(bridge_conf $NET cni-fw0 10.91.0.0/24 '"isDefaultGateway":true')
# fwconf EXTRA: a firewall config of this network.
fwconf() { printf '{"cniVersion":"1.0.0","name":"%s","type":"firewall"%s}' "$NET" "${1:+,$1}"; }
filter() { in_host iptables -t filter -S; }

cni ADD ctr-1 "$NS_c1" eth0 "$BCONF"
assert_rc 0 "bridge ADD ctr-1"
R1=$CNI_OUT
A1=$(result_addr "$R1")
cni ADD ctr-2 "$NS_c2" eth0 "$BCONF"
assert_rc 0 "bridge ADD ctr-2"
R2=$CNI_OUT
check "before any firewall rule, ctr-1 reaches the outside namespace" pings "$NS_c1" 192.168.79.2

if iptables_ok; then
    in_host iptables -P FORWARD DROP
    BEFORE=$(filter)
    check_not "with FORWARD policy DROP, ctr-1 cannot reach outside" pings "$NS_c1" 192.168.79.2

    FW=$(fwconf '"backend":"iptables"')
    cni ADD ctr-1 "$NS_c1" eth0 "$(with_prev "$FW" "$R1")"
    assert_rc 0 "firewall ADD ctr-1 (iptables)"
    assert_json "$CNI_OUT" "d == $R1" "firewall passes prevResult through unchanged"
    F=$(filter)
    log "filter table:"
    printf '%s\n' "$F" | sed 's/^/#   /'
    assert_eq "$(grep -- '^-A FORWARD ' <<<"$F" | head -1)" \
        '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD' "FORWARD jumps to CNI-FORWARD first"
    assert_eq "$(grep -- '^-A CNI-FORWARD ' <<<"$F" | head -1)" \
        '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN' \
        "CNI-FORWARD jumps to CNI-ADMIN first"
    check "chain CNI-ADMIN exists" grep -qx -- '-N CNI-ADMIN' <<<"$F"
    check "CNI-FORWARD accepts replies to $A1" \
        grep -qE -- "^-A CNI-FORWARD -d $A1/32 .*--ctstate RELATED,ESTABLISHED -j ACCEPT" <<<"$F"
    check "CNI-FORWARD accepts traffic from $A1" grep -qE -- "^-A CNI-FORWARD -s $A1/32 .*-j ACCEPT" <<<"$F"
    check "ctr-1 (firewall) reaches outside" pings "$NS_c1" 192.168.79.2
    check_not "ctr-2 (no firewall) still cannot" pings "$NS_c2" 192.168.79.2

    in_host iptables -A CNI-ADMIN -s "$A1/32" -j DROP
    check_not "an admin DROP in CNI-ADMIN overrides the container's accept" pings "$NS_c1" 192.168.79.2
    in_host iptables -D CNI-ADMIN -s "$A1/32" -j DROP

    cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$FW" "$R1")"
    assert_rc 0 "CHECK ctr-1 passes"
    RULE=$(filter | grep -E -- "^-A CNI-FORWARD -s $A1/32 " | head -1)
    eval "in_host iptables ${RULE/-A /-D }"
    cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$FW" "$R1")"
    assert_error_code 101 "CHECK fails once the -s $A1 rule is gone"
    cni ADD ctr-1 "$NS_c1" eth0 "$(with_prev "$FW" "$R1")"
    assert_rc 0 "a repeated ADD restores the rules"
    assert_eq "$(filter | grep -c -- "$A1/32")" 2 "… without duplicating them"

    # Another admin chain name and ingressPolicy same-bridge for ctr-2.
    FW2=$(fwconf '"backend":"iptables","iptablesAdminChainName":"MY-ADMIN","ingressPolicy":"same-bridge"')
    cni ADD ctr-2 "$NS_c2" eth0 "$(with_prev "$FW2" "$R2")"
    assert_rc 0 "firewall ADD ctr-2 with iptablesAdminChainName and ingressPolicy same-bridge"
    F=$(filter)
    check "MY-ADMIN is jumped to from CNI-FORWARD" grep -qF -- '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j MY-ADMIN' <<<"$F"
    assert_eq "$(grep -- '^-A FORWARD ' <<<"$F" | head -1)" \
        '-A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j CNI-ISOLATION-STAGE-1' \
        "FORWARD jumps to CNI-ISOLATION-STAGE-1 first"
    check "stage 1 sends traffic leaving cni-fw0 to stage 2" \
        grep -qF -- '-A CNI-ISOLATION-STAGE-1 -i cni-fw0 ! -o cni-fw0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2' <<<"$F"
    check "stage 2 drops traffic entering cni-fw0" \
        grep -qF -- '-A CNI-ISOLATION-STAGE-2 -o cni-fw0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j DROP' <<<"$F"
    check "ctr-2 reaches outside" pings "$NS_c2" 192.168.79.2
    cni CHECK ctr-2 "$NS_c2" eth0 "$(with_prev "$FW2" "$R2")"
    assert_rc 0 "CHECK ctr-2 passes"

    cni DEL ctr-1 "$NS_c1" eth0 "$(with_prev "$FW" "$R1")"
    assert_rc 0 "firewall DEL ctr-1"
    check_not "after DEL, ctr-1 cannot reach outside" pings "$NS_c1" 192.168.79.2
    check "ctr-2 still can" pings "$NS_c2" 192.168.79.2
    cni DEL ctr-1 "$NS_c1" eth0 "$FW"
    assert_rc 0 "second firewall DEL ctr-1 (no prevResult)"
    cni DEL ctr-2 "$NS_c2" eth0 "$FW2"
    assert_rc 0 "firewall DEL ctr-2 without prevResult"
    check_not "after DEL without prevResult, ctr-2 cannot reach outside" pings "$NS_c2" 192.168.79.2
    AFTER=$(filter)
    LEFT=$(diff <(printf '%s\n' "$BEFORE") <(printf '%s\n' "$AFTER") | grep '^[<>]' |
        grep -vxE -- '> -N (CNI-FORWARD|CNI-ADMIN|MY-ADMIN|CNI-ISOLATION-STAGE-1|CNI-ISOLATION-STAGE-2)' |
        grep -vE -- '^> -A (FORWARD|CNI-FORWARD) -m comment --comment "CNI firewall plugin (rules|admin overrides)" -j (CNI-FORWARD|CNI-ADMIN|MY-ADMIN)$' |
        grep -vE -- '^> -A (FORWARD|CNI-ISOLATION-STAGE-[12]) .*ingressPolicy: ')
    assert_empty "$LEFT" "after the DELs only the shared chains and jumps are left (as with the reference)"
    check_not "no rule names a container address" grep -qE -- '10\.91\.0\.[0-9]+/32' <<<"$AFTER"
    in_host iptables -P FORWARD ACCEPT
else
    log "iptables unusable here: iptables backend not tested"
fi

if nft_ok; then
    FWN=$(fwconf '"backend":"nftables"')
    cni ADD ctr-1 "$NS_c1" eth0 "$(with_prev "$FWN" "$R1")"
    assert_rc 0 "firewall ADD ctr-1 (nftables)"
    in_host nft add chain inet cni_firewall forward '{ policy drop ; }'
    T=$(in_host nft list table inet cni_firewall)
    log "nft table:"
    printf '%s\n' "$T" | sed 's/^/#   /'
    check "nft: containers chain accepts traffic from $A1" grep -qE "ip saddr $A1 accept" <<<"$T"
    check "nft: forward jumps to admin before containers" \
        "$PY" -c 'import sys; t=sys.stdin.read(); a=t.find("jump admin"); c=t.find("jump containers"); sys.exit(0 if 0 <= a < c else 1)' <<<"$T"
    check "ctr-1 (firewall) reaches outside through the drop policy" pings "$NS_c1" 192.168.79.2
    check_not "ctr-2 (no firewall rules) cannot" pings "$NS_c2" 192.168.79.2
    cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$FWN" "$R1")"
    assert_rc 0 "nft CHECK ctr-1 passes"
    cni DEL ctr-1 "$NS_c1" eth0 "$FWN"
    assert_rc 0 "nft DEL ctr-1 without prevResult"
    check_not "after DEL, ctr-1 cannot reach outside" pings "$NS_c1" 192.168.79.2
    check_not "nft: no rule for $A1 is left" grep -qF "$A1" <<<"$(in_host nft list table inet cni_firewall)"
    cni CHECK ctr-1 "$NS_c1" eth0 "$(with_prev "$FWN" "$R1")"
    assert_error_code 101 "nft CHECK fails after DEL"
    cni DEL ctr-1 "$NS_c1" eth0 "$FWN"
    assert_rc 0 "second nft DEL"
else
    log "nft unusable here: nftables backend not tested"
fi

cni DEL ctr-2 "$NS_c2" eth0 "$BCONF"
assert_rc 0 "bridge DEL ctr-2"
cni DEL ctr-1 "$NS_c1" eth0 "$BCONF"
assert_rc 0 "bridge DEL ctr-1"
assert_empty "$(reservations "$(store_dir $NET)")" "no reservation left"
finish
