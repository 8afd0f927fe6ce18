# shellcheck shell=bash
# The body of t-bridge-ipmasq-iptables and t-bridge-ipmasq-nftables (set BACKEND first).
#
# Layout, all in namespaces this test makes:
#   container c0 (no ipMasq) ─┐
#                             ├─ bridge cni-masq0 (10.89.0.1/24) ─ host ─ vout 192.168.77.1/24
#   container c1 (ipMasq)   ──┘                                        │ veth
#                                           outside: vin 192.168.77.2/24, no route to 10.89.0.0/24
# With ipMasq the container's packets leave the host with 192.168.77.1 as source, so the
# outside namespace can answer; without it the answer has no route and the ping fails.
. "$(dirname "$0")/lib.sh"

setup_host
case $BACKEND in
    iptables) iptables_ok || skip "iptables backend: iptables/iptables-save/iptables-restore missing or unusable in a namespace" ;;
    nftables) nft_ok || skip "nftables backend: nft missing or unusable in a namespace" ;;
    *) echo "BACKEND must be iptables or nftables" >&2; exit 2 ;;
esac
mk_ns out
mk_ns c0
mk_ns c1
mk_ns c2
OUT=$NS_out

ip -n "$HOST" link add vout type veth peer name vin netns "$OUT" || exit 1
ip -n "$HOST" addr add 192.168.77.1/24 dev vout
ip -n "$HOST" link set vout up
ip -n "$OUT" addr add 192.168.77.2/24 dev vin
ip -n "$OUT" link set vin up
ip -n "$OUT" link set lo up

NET=masqnet
BR=cni-masq0
PLAIN=$(bridge_conf $NET $BR 10.89.0.0/24 '"isDefaultGateway":true')
MASQ=$(bridge_conf $NET $BR 10.89.0.0/24 "\"isDefaultGateway\":true,\"ipMasq\":true,\"ipMasqBackend\":\"$BACKEND\"")
STORE=$(store_dir $NET)

check_not "the outside namespace has no route to the container subnet" ip -n "$OUT" route get 10.89.0.2

# --- without ipMasq
cni ADD ctr-plain "$NS_c0" eth0 "$PLAIN"
assert_rc 0 "ADD without ipMasq"
check "plain container pings its gateway" pings "$NS_c0" 10.89.0.1
check "plain container pings the host's outside address (routing works)" pings "$NS_c0" 192.168.77.1
check_not "plain container cannot ping the outside namespace (no masquerading)" pings "$NS_c0" 192.168.77.2

# --- with ipMasq
cni ADD ctr-masq "$NS_c1" eth0 "$MASQ"
assert_rc 0 "ADD with ipMasq ($BACKEND)"
R1=$CNI_OUT
A1=$(result_addr "$R1")
check "masqueraded container pings the outside namespace" pings "$NS_c1" 192.168.77.2
check_not "plain container still cannot ping the outside namespace" pings "$NS_c0" 192.168.77.2

cni CHECK ctr-masq "$NS_c1" eth0 "$(with_prev "$MASQ" "$R1")"
assert_rc 0 "CHECK of the masqueraded container"

nat_rules() { in_host iptables -t nat -S 2>/dev/null; }
nft_masq() { in_host nft list table inet cni_plugins_masquerade 2>/dev/null; }

if [[ $BACKEND == iptables ]]; then
    JUMP=$(nat_rules | grep -e "-A POSTROUTING -s $A1/32 " | grep -F 'id: \"ctr-masq\"')
    CHAIN=$(grep -oE -- '-j CNI-[0-9a-f]+' <<<"$JUMP" | cut -c4-)
    log "POSTROUTING jump: $JUMP"
    check "iptables: POSTROUTING jumps to a CNI- chain for $A1" test -n "$CHAIN"
    check "iptables: chain $CHAIN masquerades" grep -qE -- "-A $CHAIN .*-j MASQUERADE" <<<"$(nat_rules)"
    check_not "nft: no masquerade rule for the iptables backend" grep -q "id: ctr-masq" <<<"$(nft_masq)"
else
    RULES=$(nft_masq)
    log "nft table: ${RULES//$'\n'/ }"
    check "nft: chain masq_checks has a masquerade rule for ctr-masq" \
        grep -qE "ip saddr $A1 .*masquerade.*comment \".*id: ctr-masq\"" <<<"$RULES"
    check_not "iptables: no CNI- chain for the nftables backend" grep -q -- "-N CNI-" <<<"$(nat_rules)"
fi

# --- a second masqueraded container; DEL of the first must leave its rules alone
if [[ $BACKEND == nftables ]]; then
    # Once the table is there, an ADD adds only its own rule (re-declaring or flushing a
    # chain makes the kernel wait a grace period): a marker rule in postrouting survives.
    in_host nft add rule inet cni_plugins_masquerade postrouting meta mark 0x4242 counter
fi
cni ADD ctr-masq2 "$NS_c2" eth0 "$MASQ"
assert_rc 0 "ADD of a second masqueraded container"
R2=$CNI_OUT
if [[ $BACKEND == nftables ]]; then
    check "nft: the second ADD did not re-declare postrouting (the marker rule is still there)" \
        grep -q "0x00004242" <<<"$(nft_masq)"
fi
cni DEL ctr-masq "$NS_c1" eth0 "$MASQ"
assert_rc 0 "DEL of the first masqueraded container"
check "the second container still pings the outside namespace" pings "$NS_c2" 192.168.77.2
cni CHECK ctr-masq2 "$NS_c2" eth0 "$(with_prev "$MASQ" "$R2")"
assert_rc 0 "CHECK of the second container still passes (its masquerading is intact)"
cni DEL ctr-masq2 "$NS_c2" eth0 "$MASQ"
assert_rc 0 "DEL of the second masqueraded container"

# --- no masquerading left
NAT=$(nat_rules)
check_not "iptables: no CNI- chain remains" grep -q -- "-N CNI-" <<<"$NAT"
check_not "iptables: no rule mentions ctr-masq or ctr-masq2" grep -q "ctr-masq" <<<"$NAT"
check_not "iptables: no POSTROUTING jump to a CNI- chain remains" grep -qE -- "-A POSTROUTING .*-j CNI-" <<<"$NAT"
RULES=$(in_host nft list chain inet cni_plugins_masquerade masq_checks 2>/dev/null)
check_not "nft: no rule for ctr-masq or ctr-masq2 remains in masq_checks" grep -q "id: ctr-masq" <<<"$RULES"
check_not "nft: masq_checks has no masquerade rule left" grep -qE "(^|[[:space:]])masquerade([[:space:]]|$)" <<<"$RULES"

if [[ $BACKEND == nftables ]]; then
    # With the table gone, the rule alone fails and the whole transaction runs.
    in_host nft delete table inet cni_plugins_masquerade
    cni ADD ctr-masq3 "$NS_c1" eth0 "$MASQ"
    assert_rc 0 "ADD after the nft table was deleted"
    A3=$(result_addr "$CNI_OUT")
    check "nft: the table is declared again, with the masquerade rule for ctr-masq3" \
        grep -qE "ip saddr $A3 .*masquerade.*comment \".*id: ctr-masq3\"" <<<"$(nft_masq)"
    check "nft: postrouting goes to masq_checks again" grep -q "goto masq_checks" <<<"$(nft_masq)"
    check "the container masqueraded after the table was re-made pings the outside namespace" \
        pings "$NS_c1" 192.168.77.2
    cni DEL ctr-masq3 "$NS_c1" eth0 "$MASQ"
    assert_rc 0 "DEL of ctr-masq3"
fi

cni DEL ctr-plain "$NS_c0" eth0 "$PLAIN"
assert_rc 0 "DEL of the plain container"
assert_empty "$(reservations "$STORE")" "no reservation left"

finish
