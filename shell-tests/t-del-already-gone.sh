#!/bin/bash
# DEL never fails on "already gone" (cni-reference §1.12, §4.2): for bridge (ipMasq),
# ptp (ipMasq) and macvlan, each case ADDs a container, takes something away behind the
# plugin's back, then DELs. The DEL must exit 0 and remove everything that is left:
# the container link, the host veth, host routes to the container, the masquerade rules
# and chains that name it, and its reservation. A second DEL must exit 0 too.
#
# Cases: the netns deleted (with and without prevResult; and with CNI_NETNS empty); the
# container link deleted by hand; the bridge deleted; the reservation removed; the
# masquerade rules flushed (iptables and nft); prevResult missing; runtimeConfig
# missing (ADD had runtimeConfig.mac and .ips); a config for a container never added;
# for macvlan, the master deleted.
. "$(dirname "$0")/lib.sh"

setup_host
DATA="$T_TMP/data"
BACKENDS=()
iptables_ok && BACKENDS+=(iptables)
nft_ok && BACKENDS+=(nftables)
((${#BACKENDS[@]} > 0)) || skip "neither iptables nor nft is usable in a namespace"
has_backend() { [[ " ${BACKENDS[*]} " == *" $1 "* ]]; }
BK=${BACKENDS[0]}

bridge_cfg() { # BACKEND
    bridge_conf gbnet cni-gone0 10.95.0.0/24 "\"isGateway\":true,\"ipMasq\":true,\"ipMasqBackend\":\"$1\""
}
ptp_cfg() { # BACKEND
    printf '{"cniVersion":"1.0.0","name":"gpnet","type":"ptp","ipMasq":true,"ipMasqBackend":"%s","ipam":{"type":"host-local","dataDir":"%s","subnet":"10.95.1.0/24"}}' "$1" "$DATA"
}
macvlan_cfg() {
    printf '{"cniVersion":"1.0.0","name":"gmnet","type":"macvlan","master":"gmv0","mode":"bridge","ipam":{"type":"host-local","dataDir":"%s","subnet":"10.95.2.0/24"}}' "$DATA"
}
mk_master() {
    in_host ip link show gmv0 >/dev/null 2>&1 && return
    in_host ip link add gmv0 type veth peer name gmv1
    in_host ip link set gmv0 up
    in_host ip link set gmv1 up
}
mk_master

# say WHAT TEXT: prints "WHAT: TEXT" (lines joined) when TEXT is not empty.
say() { [[ -z $2 ]] || printf '%s: %s\n' "$1" "${2//$'\n'/ | }"; }

# What is left of container ID (an attachment of CONFIG in namespace NS), one per line.
leftovers() {
    local id=$1 ns=$2 conf=$3 net
    net=$(jget "$conf" 'd["name"]')
    if [[ -n $ns && -e /run/netns/$ns ]]; then
        say "container links" "$(links "$ns" | grep -v -x lo)"
    fi
    say "host veths" "$(links_of_kind "$HOST" veth | grep -v -x -e gmv0 -e gmv1)"
    say "host macvlans" "$(links_of_kind "$HOST" macvlan)"
    say "host routes" "$(ip -n "$HOST" -4 route show | grep -E '^10\.95\.[0-9]+\.[0-9]+ ')"
    say "iptables" "$(in_host iptables-save -t nat 2>/dev/null | grep -E -- "id: \\\\?\"$id\\\\?\"|^:CNI-")"
    say "nft" "$(in_host nft list ruleset 2>/dev/null | grep -F -- "id: $id\"")"
    say "reservations" "$(grep -l -r -- "^$id"$'\r' "$DATA/$net" 2>/dev/null)"
    say "store files" "$(store_extras "$DATA/$net")"
}

CASE=0
# gone_case LABEL CONFIG BREAK_FN [DEL_MODE]: ADD a fresh container with CONFIG, run
# BREAK_FN (it sees ID, NS, RESULT, CONF), DEL with prevResult unless DEL_MODE says
# "noprev", "emptyns" (CNI_NETNS="") or "norc" (config without runtimeConfig); then the
# DEL and a second DEL exit 0 and nothing is left.
gone_case() {
    local label=$1 conf=$2 break_fn=$3 mode=${4:-}
    CASE=$((CASE + 1))
    ID="gone-$CASE"
    mk_ns "g$CASE"
    local v="NS_g$CASE"
    NS=${!v}
    CONF=$conf
    local ifname=eth0
    cni ADD "$ID" "$NS" "$ifname" "$CONF" >/dev/null
    if [[ $CNI_RC != 0 ]]; then
        not_ok "$label: setup ADD (exit $CNI_RC: $CNI_OUT)"
        return
    fi
    RESULT=$CNI_OUT
    "$break_fn"
    local del_conf del_ns=$NS
    case $mode in
        noprev) del_conf=$CONF ;;
        emptyns) del_conf=$CONF del_ns="" ;;
        norc) del_conf=$("$PY" -c 'import json,sys; c=json.loads(sys.argv[1]); c.pop("runtimeConfig",None); print(json.dumps(c))' "$CONF") ;;
        *) del_conf=$(with_prev "$CONF" "$RESULT") ;;
    esac
    [[ -e /run/netns/$NS ]] || [[ -z $del_ns ]] || del_ns=/run/netns/$NS
    cni DEL "$ID" "$del_ns" "$ifname" "$del_conf" >/dev/null
    assert_rc 0 "$label: DEL exits 0"
    cni DEL "$ID" "$del_ns" "$ifname" "$del_conf" >/dev/null
    assert_rc 0 "$label: a second DEL exits 0"
    # A deleted namespace takes its veth pair with it, asynchronously.
    local left _
    for _ in $(seq 1 50); do
        left=$(leftovers "$ID" "$NS" "$CONF")
        [[ -z $left ]] && break
        sleep 0.02
    done
    assert_empty "$left" "$label: nothing of $ID is left"
    [[ -e /run/netns/$NS ]] && del_ns "$NS"
    return 0
}

# Things to take away.
nothing() { :; }
netns_deleted() { del_ns "$NS"; }
link_deleted() { ip -n "$NS" link del eth0; }
bridge_deleted() { in_host ip link del cni-gone0; }
master_deleted() { in_host ip link del gmv0; }
reservation_removed() {
    local net
    net=$(jget "$CONF" 'd["name"]')
    rm -f -- "$DATA/$net/$(result_addr "$RESULT")"
}
iptables_flushed() {
    in_host iptables -t nat -F
    in_host iptables -t nat -X
}
nft_flushed() { in_host nft flush ruleset; }
bridge_and_netns_deleted() { bridge_deleted; netns_deleted; }
master_and_netns_deleted() { master_deleted; netns_deleted; }

for plugin in bridge ptp; do
    conf=$("${plugin}_cfg" "$BK")
    gone_case "$plugin: netns deleted" "$conf" netns_deleted
    gone_case "$plugin: netns deleted, no prevResult" "$conf" netns_deleted noprev
    gone_case "$plugin: netns deleted, CNI_NETNS empty, no prevResult" "$conf" netns_deleted emptyns
    gone_case "$plugin: container link deleted" "$conf" link_deleted
    gone_case "$plugin: reservation removed" "$conf" reservation_removed
    if has_backend iptables; then
        gone_case "$plugin: iptables nat rules flushed" "$("${plugin}_cfg" iptables)" iptables_flushed
    fi
    if has_backend nftables; then
        gone_case "$plugin: nft ruleset flushed" "$("${plugin}_cfg" nftables)" nft_flushed
    fi
    gone_case "$plugin: prevResult missing" "$conf" nothing noprev
    gone_case "$plugin: runtimeConfig missing" \
        "$(with_key "$conf" runtimeConfig '{"mac":"02:95:00:00:00:07","ips":["10.95.'"$([[ $plugin == bridge ]] && echo 0 || echo 1)"'.77/24"]}')" \
        nothing norc
done
gone_case "bridge: bridge deleted" "$(bridge_cfg "$BK")" bridge_deleted
gone_case "bridge: bridge deleted, netns deleted, no prevResult" "$(bridge_cfg "$BK")" \
    bridge_and_netns_deleted noprev

conf=$(macvlan_cfg)
gone_case "macvlan: netns deleted" "$conf" netns_deleted
gone_case "macvlan: netns deleted, CNI_NETNS empty, no prevResult" "$conf" netns_deleted emptyns
gone_case "macvlan: container link deleted" "$conf" link_deleted
gone_case "macvlan: reservation removed" "$conf" reservation_removed
gone_case "macvlan: prevResult missing" "$conf" nothing noprev
gone_case "macvlan: master deleted" "$conf" master_deleted
mk_master
gone_case "macvlan: master and netns deleted, no prevResult" "$conf" master_and_netns_deleted noprev
mk_master

# Never added: DEL (with and without a netns) exits 0 and creates nothing.
mk_ns never
for conf in "$(bridge_cfg "$BK")" "$(ptp_cfg "$BK")" "$(macvlan_cfg)"; do
    plugin=$(jget "$conf" 'd["type"]')
    before=$(links "$HOST")
    cni DEL never-added "$NS_never" eth0 "$conf" >/dev/null
    assert_rc 0 "$plugin: DEL of a container never added exits 0"
    cni DEL never-added "" eth0 "$conf" >/dev/null
    assert_rc 0 "$plugin: DEL of a container never added, CNI_NETNS empty, exits 0"
    assert_eq "$(links "$HOST")" "$before" "$plugin: DEL of a container never added changes no host link"
    assert_empty "$(leftovers never-added "$NS_never" "$conf")" "$plugin: nothing of never-added exists"
done

finish
