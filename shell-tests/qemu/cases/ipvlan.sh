#!/bin/sh
# ipvlan inside the VM (Debian's kernel has ipvlan). A throwaway "host" namespace holds two
# dummy masters; the ipvlan plugin (host-local IPAM, in-process) runs in it:
# - l2 mode on ipm0: two containers get an ipvlan eth0 in l2 mode with the result's
#   address and the master's MAC, no temporary link is left, and they ping each other;
#   CHECK with the prevResult passes; a second ADD of eth0 into a container fails and
#   leaves no link and no reservation behind;
# - l3 mode on ipm1: the same for two more containers, which ping each other too;
# - DEL removes the link, a second DEL exits 0, DEL after the netns was deleted exits 0,
#   and every reservation is released.
#
# Runs under guest-init.sh: POSIX sh (busybox), root, IPCNI=<plugin dir>, IP=/sbin/ip.
# set -u, T, the assertions (ok, check, has, eq, ...) and finish come from ../case-lib.sh.
. /etc/ipcni-case-lib.sh

H=ipv-host C1=ipv-c1 C2=ipv-c2 C3=ipv-c3 C4=ipv-c4
cleanup() {
    for ns in $C4 $C3 $C2 $C1 $H; do
        [ -e /run/netns/$ns ] && $IP netns del $ns
    done
}
trap cleanup EXIT
DATA=$T/data
mkdir -p "$T/locks"

# conf NETWORK MODE MASTER SUBNET: an ipvlan + host-local config
conf() {
    printf '{"cniVersion":"1.0.0","name":"%s","type":"ipvlan","master":"%s","mode":"%s","ipam":{"type":"host-local","dataDir":"%s","subnet":"%s"}}' \
        "$1" "$3" "$2" "$DATA" "$4"
}
# cni CMD ID NETNS CONFIG: runs the ipvlan plugin in the host namespace; sets RC and OUT
cni() {
    nsp=/run/netns/$3
    [ -z "$3" ] && nsp=""
    OUT=$(printf '%s' "$4" | $IP netns exec $H env -i PATH=/sbin:/bin IPCNI_LOCK_DIR="$T/locks" \
        CNI_COMMAND="$1" CNI_CONTAINERID="$2" CNI_NETNS="$nsp" CNI_IFNAME=eth0 CNI_PATH="$IPCNI" \
        "$IPCNI/ipvlan" 2>"$T/err")
    RC=$?
    echo "# ipvlan $1 $2 ${nsp:-<no netns>} -> exit $RC"
    [ "$RC" != 0 ] && echo "#   stdout: $OUT" && sed 's/^/#   stderr: /' "$T/err"
    return 0
}
# addr_of RESULT: the first address of the result, without its prefix
addr_of() {
    printf '%s\n' "$1" | sed -n 's/.*"address": *"\([^"/]*\)\/.*/\1/p' | head -n 1
}
# reservations NETWORK: how many addresses the network's store holds
reservations() {
    ls "$DATA/$1" 2>/dev/null | grep -cE '^[0-9a-f.:]+$'
}

check "netns add $H" $IP netns add $H
check "netns add $C1" $IP netns add $C1
check "netns add $C2" $IP netns add $C2
check "netns add $C3" $IP netns add $C3
check "netns add $C4" $IP netns add $C4
$IP -n $H link set lo up
check "dummy master ipm0 in $H" $IP -n $H link add ipm0 type dummy
check "dummy master ipm1 in $H" $IP -n $H link add ipm1 type dummy
$IP -n $H link set ipm0 up
$IP -n $H link set ipm1 up
MASTER_MAC=$($IP -n $H link show dev ipm0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')

# ---- l2 mode
L2=$(conf ipvnet-l2 l2 ipm0 10.55.0.0/24)
cni ADD c1 $C1 "$L2"
eq "ADD c1 (l2) exits 0" "$RC" 0
R1=$OUT
cni ADD c2 $C2 "$L2"
eq "ADD c2 (l2) exits 0" "$RC" 0
R2=$OUT
A1=$(addr_of "$R1")
A2=$(addr_of "$R2")
[ -n "$A1" ] && [ -n "$A2" ] && [ "$A1" != "$A2" ] && ok "the containers got different addresses ($A1, $A2)" ||
    not_ok "the containers got different addresses ('$A1', '$A2')"
has "c1 eth0 is an ipvlan in l2 mode" 'ipvlan +mode +l2' $IP -n $C1 -d link show dev eth0
has "c1 eth0 has $A1/24" "inet $A1/24" $IP -n $C1 addr show dev eth0
has "c2 eth0 has $A2/24" "inet $A2/24" $IP -n $C2 addr show dev eth0
has "c1 eth0 is up" '<[^>]*UP' $IP -n $C1 link show dev eth0
has "the result's MAC is the master's ($MASTER_MAC)" "\"mac\": \"$MASTER_MAC\"" printf '%s\n' "$R1"
has "the result's interface is sandboxed in $C1" "\"sandbox\": \"/run/netns/$C1\"" printf '%s\n' "$R1"
eq "no temporary link is left in $C1" "$(links_of $C1)" "eth0 lo "
check "c1 pings c2 ($A2) in l2 mode" $IP netns exec $C1 ping -c 1 -W 5 "$A2"
check "c2 pings c1 ($A1) in l2 mode" $IP netns exec $C2 ping -c 1 -W 5 "$A1"

cni CHECK c1 $C1 "$(with_prev "$L2" "$R1")"
eq "CHECK c1 with its prevResult exits 0" "$RC" 0
cni CHECK c1 $C1 "$(with_prev "$(conf ipvnet-l2 l3 ipm0 10.55.0.0/24)" "$R1")"
has "CHECK with another mode reports a mismatch (code 101)" '"code": *101' printf '%s\n' "$OUT"

cni ADD c1b $C1 "$L2"
[ "$RC" != 0 ] && ok "a second ADD of eth0 into $C1 fails" || not_ok "a second ADD of eth0 into $C1 fails"
eq "the failed ADD left no link in $C1" "$(links_of $C1)" "eth0 lo "
eq "the failed ADD released its address" "$(reservations ipvnet-l2)" 2

# ---- l3 mode
L3=$(conf ipvnet-l3 l3 ipm1 10.56.0.0/24)
cni ADD c3 $C3 "$L3"
eq "ADD c3 (l3) exits 0" "$RC" 0
R3=$OUT
cni ADD c4 $C4 "$L3"
eq "ADD c4 (l3) exits 0" "$RC" 0
R4=$OUT
A3=$(addr_of "$R3")
A4=$(addr_of "$R4")
has "c3 eth0 is an ipvlan in l3 mode" 'ipvlan +mode +l3 ' $IP -n $C3 -d link show dev eth0
has "c3 eth0 has $A3/24" "inet $A3/24" $IP -n $C3 addr show dev eth0
check "c3 pings c4 ($A4) in l3 mode" $IP netns exec $C3 ping -c 1 -W 5 "$A4"
check "c4 pings c3 ($A3) in l3 mode" $IP netns exec $C4 ping -c 1 -W 5 "$A3"

# ---- DEL
cni DEL c1 $C1 "$L2"
eq "DEL c1 exits 0" "$RC" 0
check_not "$C1 no longer has eth0" $IP -n $C1 link show dev eth0
cni DEL c1 $C1 "$L2"
eq "a second DEL c1 exits 0" "$RC" 0
$IP netns del $C2
cni DEL c2 $C2 "$L2"
eq "DEL c2 after its netns was deleted exits 0" "$RC" 0
cni DEL c3 $C3 "$L3"
eq "DEL c3 exits 0" "$RC" 0
check_not "$C3 no longer has eth0" $IP -n $C3 link show dev eth0
cni DEL c4 "" "$L3"
eq "DEL c4 with an empty CNI_NETNS exits 0" "$RC" 0
cni DEL c4 $C4 "$L3"
eq "DEL c4 exits 0" "$RC" 0
eq "no l2 reservation is left" "$(reservations ipvnet-l2)" 0
eq "no l3 reservation is left" "$(reservations ipvnet-l3)" 0
eq "the host namespace has only its own links" "$(links_of $H)" "ipm0 ipm1 lo "

finish
