#!/bin/sh
# vlan inside the VM (Debian's kernel has 8021q). A throwaway "host" namespace holds a veth
# pair vla <-> vlb; the vlan plugin (host-local IPAM, in-process) runs in it:
# - container c1 gets VLAN 100 on vla and c2 VLAN 100 on vlb (one VLAN id per master):
#   each eth0 is an 802.1Q vlan with id 100, MTU 1400, the result's address and the
#   master's MAC, no temporary link is left, and the tagged traffic crosses the veth so
#   they ping each other; CHECK passes, and reports another id as a mismatch;
# - vlanId 4095 and an MTU above the master's are refused and change nothing;
# - linkInContainer: an L2-only (ipam {}) VLAN on a dummy inside the container;
# - DEL removes the link, a second DEL exits 0, DEL after the netns was deleted exits 0,
#   and DEL succeeds after the master is gone (the reference fails there); every
#   reservation is released.
#
# Runs under guest-init.sh: POSIX sh (busybox), root, IPCNI=<plugin dir>, IP=/sbin/ip.
# set -u, T, the assertions (ok, check, has, eq, ...) and finish come from ../case-lib.sh.
. /etc/ipcni-case-lib.sh

H=vl-host C1=vl-c1 C2=vl-c2 C3=vl-c3 C4=vl-c4
cleanup() {
    for ns in $C4 $C3 $C2 $C1 $H; do
        [ -e /run/netns/$ns ] && $IP netns del $ns
    done
}
trap cleanup EXIT
DATA=$T/data
NET=vlnet
mkdir -p "$T/locks"

# conf MASTER VLANID [EXTRA_JSON_FIELDS]: a vlan + host-local config
conf() {
    printf '{"cniVersion":"1.0.0","name":"%s","type":"vlan","master":"%s","vlanId":%s%s,"ipam":{"type":"host-local","dataDir":"%s","subnet":"10.57.0.0/24"}}' \
        "$NET" "$1" "$2" "${3:+,$3}" "$DATA"
}
# cni CMD ID NETNS CONFIG: runs the vlan plugin in the host namespace; sets RC and OUT
cni() {
    nsp=/run/netns/$3
    [ -z "$3" ] && nsp=""
    OUT=$(printf '%s' "$4" | $IP netns exec $H env -i PATH=/sbin:/bin IPCNI_LOCK_DIR="$T/locks" \
        CNI_COMMAND="$1" CNI_CONTAINERID="$2" CNI_NETNS="$nsp" CNI_IFNAME=eth0 CNI_PATH="$IPCNI" \
        "$IPCNI/vlan" 2>"$T/err")
    RC=$?
    echo "# vlan $1 $2 ${nsp:-<no netns>} -> exit $RC"
    [ "$RC" != 0 ] && echo "#   stdout: $OUT" && sed 's/^/#   stderr: /' "$T/err"
    return 0
}
# addr_of RESULT: the first address of the result, without its prefix
addr_of() {
    printf '%s\n' "$1" | sed -n 's/.*"address": *"\([^"/]*\)\/.*/\1/p' | head -n 1
}
# reservations: how many addresses the network's store holds
reservations() {
    ls "$DATA/$NET" 2>/dev/null | grep -cE '^[0-9a-f.:]+$'
}

for ns in $H $C1 $C2 $C3 $C4; do
    check "netns add $ns" $IP netns add $ns
done
$IP -n $H link set lo up
check "veth vla <-> vlb in $H" $IP -n $H link add vla type veth peer name vlb
$IP -n $H link set vla up
$IP -n $H link set vlb up
MAC_A=$($IP -n $H link show dev vla | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')

# ---- two containers, VLAN 100 on either end of the veth
CA=$(conf vla 100 '"mtu":1400')
CB=$(conf vlb 100 '"mtu":1400')
cni ADD c1 $C1 "$CA"
eq "ADD c1 exits 0" "$RC" 0
R1=$OUT
cni ADD c2 $C2 "$CB"
eq "ADD c2 exits 0" "$RC" 0
R2=$OUT
A1=$(addr_of "$R1")
A2=$(addr_of "$R2")
[ -n "$A1" ] && [ -n "$A2" ] && [ "$A1" != "$A2" ] && ok "the containers got different addresses ($A1, $A2)" ||
    not_ok "the containers got different addresses ('$A1', '$A2')"
has "c1 eth0 is an 802.1Q vlan with id 100" 'vlan protocol 802\.1Q id 100 ' $IP -n $C1 -d link show dev eth0
has "c1 eth0 has MTU 1400 and is up" '<[^>]*UP[^>]*> mtu 1400 ' $IP -n $C1 link show dev eth0
has "c1 eth0 has $A1/24" "inet $A1/24" $IP -n $C1 addr show dev eth0
has "c2 eth0 has $A2/24" "inet $A2/24" $IP -n $C2 addr show dev eth0
has "the result's MAC is the master's ($MAC_A)" "\"mac\": \"$MAC_A\"" printf '%s\n' "$R1"
has "the result's interface is sandboxed in $C1" "\"sandbox\": \"/run/netns/$C1\"" printf '%s\n' "$R1"
eq "no temporary link is left in $C1" "$(links_of $C1)" "eth0 lo "
check "c1 pings c2 ($A2) over VLAN 100" $IP netns exec $C1 ping -c 1 -W 5 "$A2"
check "c2 pings c1 ($A1) over VLAN 100" $IP netns exec $C2 ping -c 1 -W 5 "$A1"

cni CHECK c1 $C1 "$(with_prev "$CA" "$R1")"
eq "CHECK c1 with its prevResult exits 0" "$RC" 0
cni CHECK c1 $C1 "$(with_prev "$(conf vla 200)" "$R1")"
has "CHECK with another VLAN id reports a mismatch (code 101)" '"code": *101' printf '%s\n' "$OUT"

# ---- refused configs change nothing
cni ADD c3 $C3 "$(conf vla 4095)"
has "vlanId 4095 is refused (code 7)" '"code": *7[,}]' printf '%s\n' "$OUT"
cni ADD c3 $C3 "$(conf vla 300 '"mtu":1600')"
has "an MTU above the master's is refused (code 7)" '"code": *7[,}]' printf '%s\n' "$OUT"
eq "the refused ADDs left $C3 as it was" "$(links_of $C3)" "lo "
eq "the refused ADDs reserved nothing" "$(reservations)" 2

# ---- linkInContainer, L2 only
check "dummy lm0 inside $C4" $IP -n $C4 link add lm0 type dummy
$IP -n $C4 link set lm0 up
L2C=$(printf '{"cniVersion":"1.0.0","name":"vll2","type":"vlan","master":"lm0","vlanId":10,"linkInContainer":true,"ipam":{}}')
cni ADD c4 $C4 "$L2C"
eq "ADD c4 (linkInContainer, L2 only) exits 0" "$RC" 0
has "c4 eth0 is VLAN 10 on lm0" 'eth0@lm0:.*' $IP -n $C4 link show dev eth0
has "c4 eth0 is an 802.1Q vlan with id 10" 'vlan protocol 802\.1Q id 10 ' $IP -n $C4 -d link show dev eth0

# ---- DEL with the master gone: a VLAN on a dummy master that is then deleted
check "dummy vld3 in $H" $IP -n $H link add vld3 type dummy
$IP -n $H link set vld3 up
C3CONF=$(conf vld3 7)
cni ADD c3 $C3 "$C3CONF"
eq "ADD c3 on vld3 exits 0" "$RC" 0
check "delete the master vld3" $IP -n $H link del vld3
cni DEL c3 $C3 "$C3CONF"
eq "DEL c3 after its master was deleted exits 0" "$RC" 0
check_not "$C3 has no eth0" $IP -n $C3 link show dev eth0

# ---- DEL
cni DEL c1 $C1 "$CA"
eq "DEL c1 exits 0" "$RC" 0
check_not "$C1 no longer has eth0" $IP -n $C1 link show dev eth0
cni DEL c1 $C1 "$CA"
eq "a second DEL c1 exits 0" "$RC" 0
$IP netns del $C2
cni DEL c2 $C2 "$CB"
eq "DEL c2 after its netns was deleted exits 0" "$RC" 0
cni DEL c4 $C4 "$L2C"
eq "DEL c4 exits 0" "$RC" 0
eq "DEL c4 left only the master in $C4" "$(links_of $C4)" "lm0 lo "
eq "no reservation is left" "$(reservations)" 0
eq "the host namespace has only its own links" "$(links_of $H)" "lo vla vlb "

finish
