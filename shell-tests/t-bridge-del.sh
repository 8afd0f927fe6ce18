#!/bin/bash
# DEL is idempotent and works with whatever is left: twice in a row, after the container
# namespace is gone (address released, masquerading removed), for a container never
# added, and with an empty CNI_NETNS.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
mk_ns c3

# Masquerading makes "DEL after the netns is gone" also cover firewall cleanup.
if iptables_ok; then
    BACKEND=iptables
elif nft_ok; then
    BACKEND=nftables
else
    BACKEND=
    log "neither iptables nor nft usable: masquerade cleanup is not covered"
fi
NET=delnet
BR=cni-del0
EXTRA='"isGateway":true'
[[ -n $BACKEND ]] && EXTRA+=",\"ipMasq\":true,\"ipMasqBackend\":\"$BACKEND\""
CONF=$(bridge_conf $NET $BR 10.90.0.0/24 "$EXTRA")
STORE=$(store_dir $NET)

# masq_state ID: lines of the host's firewall state that belong to container ID.
masq_state() {
    if [[ $BACKEND == iptables ]]; then
        in_host iptables -t nat -S 2>/dev/null | grep -F "id: \\\"$1\\\""
        in_host iptables -t nat -S 2>/dev/null | grep -E -- "^-N CNI-"
    elif [[ $BACKEND == nftables ]]; then
        in_host nft list chain inet cni_plugins_masquerade masq_checks 2>/dev/null | grep -F "id: $1\""
    fi
    return 0
}

# --- DEL twice
cni ADD ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "ADD ctr-1"
A1=$(result_addr "$CNI_OUT")
HV1=$(jget "$CNI_OUT" "d['interfaces'][1]['name']")
cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "first DEL ctr-1"
assert_empty "$CNI_OUT" "DEL prints nothing on stdout"
cni DEL ctr-1 "$NS_c1" eth0 "$CONF"
assert_rc 0 "second DEL ctr-1"
check_not "host veth $HV1 is gone" ip -n "$HOST" link show "$HV1"
check_not "container eth0 is gone" ip -n "$NS_c1" link show eth0
check_not "address $A1 is released" test -e "$STORE/$A1"
[[ -n $BACKEND ]] && assert_empty "$(masq_state ctr-1)" "masquerading of ctr-1 removed ($BACKEND)"

# --- DEL after the container namespace was deleted
cni ADD ctr-2 "$NS_c2" eth0 "$CONF"
assert_rc 0 "ADD ctr-2"
A2=$(result_addr "$CNI_OUT")
HV2=$(jget "$CNI_OUT" "d['interfaces'][1]['name']")
check "address $A2 is reserved" test -e "$STORE/$A2"
if [[ -n $BACKEND ]]; then
    check "masquerading of ctr-2 is in place ($BACKEND)" test -n "$(masq_state ctr-2)"
fi
GONE=/run/netns/$NS_c2
del_ns "$NS_c2"
check_not "the container namespace is gone" test -e "$GONE"
cni DEL ctr-2 "$GONE" eth0 "$CONF"
assert_rc 0 "DEL ctr-2 with its netns gone"
check_not "address $A2 is released" test -e "$STORE/$A2"
check_not "host veth $HV2 is gone" ip -n "$HOST" link show "$HV2"
[[ -n $BACKEND ]] && assert_empty "$(masq_state ctr-2)" "masquerading of ctr-2 removed ($BACKEND)"

# --- DEL after the netns file is gone while the namespace lives on (something still
# holds it): the veth pair lingers, and DEL removes it by the host end's name.
mk_ns c5
cni ADD ctr-5 "$NS_c5" eth0 "$CONF"
assert_rc 0 "ADD ctr-5"
A5=$(result_addr "$CNI_OUT")
HV5=$(jget "$CNI_OUT" "d['interfaces'][1]['name']")
in_ns "$NS_c5" sleep 30 &
HOLDER=$!
T_PIDS+=("$HOLDER")
for _ in $(seq 1 50); do
    [[ $(stat -L -c %i "/proc/$HOLDER/ns/net" 2>/dev/null) == $(stat -L -c %i "/run/netns/$NS_c5") ]] && break
    sleep 0.05
done
GONE5=/run/netns/$NS_c5
del_ns "$NS_c5"
check "host veth $HV5 lingers while the namespace is held" ip -n "$HOST" link show "$HV5"
cni DEL ctr-5 "$GONE5" eth0 "$CONF"
assert_rc 0 "DEL ctr-5 with its netns file gone"
check_not "host veth $HV5 is deleted by name" ip -n "$HOST" link show "$HV5"
check_not "address $A5 is released" test -e "$STORE/$A5"
[[ -n $BACKEND ]] && assert_empty "$(masq_state ctr-5)" "masquerading of ctr-5 removed ($BACKEND)"
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null

# --- DEL for a container never added
cni DEL never-added "$NS_c3" eth0 "$CONF"
assert_rc 0 "DEL for a container never added"
cni DEL never-added-2 /run/netns/${T_PREFIX}no-such-ns eth0 "$CONF"
assert_rc 0 "DEL for a container never added, netns path that never existed"

# --- DEL with CNI_NETNS empty
cni ADD ctr-3 "$NS_c3" eth0 "$CONF"
assert_rc 0 "ADD ctr-3"
A3=$(result_addr "$CNI_OUT")
HV3=$(jget "$CNI_OUT" "d['interfaces'][1]['name']")
cni DEL ctr-3 "" eth0 "$CONF"
assert_rc 0 "DEL ctr-3 with CNI_NETNS empty"
check_not "address $A3 is released" test -e "$STORE/$A3"
check_not "host veth $HV3 is gone" ip -n "$HOST" link show "$HV3"
check_not "container eth0 went with its host peer" ip -n "$NS_c3" link show eth0
[[ -n $BACKEND ]] && assert_empty "$(masq_state ctr-3)" "masquerading of ctr-3 removed ($BACKEND)"
cni DEL ctr-3 "" eth0 "$CONF"
assert_rc 0 "DEL ctr-3 with CNI_NETNS empty, again"

# --- GC instead of DEL (cniVersion 1.1.0): valid-attachments=[] releases the address
# and the masquerading of an attachment nobody deleted.
mk_ns c4
CONF110=$(with_key "$CONF" cniVersion '"1.1.0"')
cni ADD ctr-4 "$NS_c4" eth0 "$CONF110"
assert_rc 0 "ADD ctr-4 (1.1.0)"
A4=$(result_addr "$CNI_OUT")
[[ -n $BACKEND ]] && check "masquerading of ctr-4 is in place ($BACKEND)" test -n "$(masq_state ctr-4)"
del_ns "$NS_c4"
cni GC "" "" "" "$(with_key "$CONF110" cni.dev/valid-attachments '[]')"
assert_rc 0 "bridge GC with cni.dev/valid-attachments=[]"
check_not "address $A4 is released by GC" test -e "$STORE/$A4"
[[ -n $BACKEND ]] && assert_empty "$(masq_state ctr-4)" "masquerading of ctr-4 removed by GC ($BACKEND)"

assert_empty "$(reservations "$STORE")" "no reservation left"
assert_empty "$(links_of_kind "$HOST" veth)" "no veth left in the host namespace"

finish
