#!/bin/sh
# dummy inside the VM (Debian's kernel has dummy). The dummy plugin (host-local IPAM,
# in-process) runs in a throwaway "host" namespace:
# - two containers each get a dummy eth0, up, with the result's address and MAC (and
#   the IPv6 address of a dual-stack range), no other link; each reaches its own
#   address; CHECK passes, and reports a downed link as a mismatch;
# - without IPAM the plugin refuses (code 7) and changes nothing;
# - a second ADD of eth0 into a container fails and leaves no reservation behind;
# - DEL removes the link, a second DEL exits 0, DEL after the netns was deleted exits 0,
#   and every reservation is released.
#
# Runs under guest-init.sh: POSIX sh (busybox), root, IPCNI=<plugin dir>, IP=/sbin/ip.
# set -u, T, the assertions (ok, check, has, eq, ...) and finish come from ../case-lib.sh.
. /etc/ipcni-case-lib.sh

H=dm-host C1=dm-c1 C2=dm-c2 C3=dm-c3
cleanup() {
    for ns in $C3 $C2 $C1 $H; do
        [ -e /run/netns/$ns ] && $IP netns del $ns
    done
}
trap cleanup EXIT
DATA=$T/data
NET=dmnet
mkdir -p "$T/locks"

CONF=$(printf '{"cniVersion":"1.0.0","name":"%s","type":"dummy","ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.58.0.0/24"}],[{"subnet":"fd00:58::/64"}]]}}' "$NET" "$DATA")
# cni CMD ID NETNS CONFIG: runs the dummy plugin in the host namespace; sets RC and OUT
cni() {
    nsp=/run/netns/$3
    [ -z "$3" ] && nsp=""
    OUT=$(printf '%s' "$4" | $IP netns exec $H env -i PATH=/sbin:/bin IPCNI_LOCK_DIR="$T/locks" \
        CNI_COMMAND="$1" CNI_CONTAINERID="$2" CNI_NETNS="$nsp" CNI_IFNAME=eth0 CNI_PATH="$IPCNI" \
        "$IPCNI/dummy" 2>"$T/err")
    RC=$?
    echo "# dummy $1 $2 ${nsp:-<no netns>} -> exit $RC"
    [ "$RC" != 0 ] && echo "#   stdout: $OUT" && sed 's/^/#   stderr: /' "$T/err"
    return 0
}
# addr_of RESULT [FAMILY_PATTERN]: the first address of the result without its prefix
addr_of() {
    printf '%s\n' "$1" | sed -n 's/.*"address": *"\([^"/]*\)\/.*/\1/p' | grep -E -- "${2:-.}" | head -n 1
}
mac_of() {
    printf '%s\n' "$1" | sed -n 's/.*"mac": *"\([^"]*\)".*/\1/p' | head -n 1
}
reservations() {
    ls "$DATA/$NET" 2>/dev/null | grep -cE '^[0-9a-f.:]+$'
}

for ns in $H $C1 $C2 $C3; do
    check "netns add $ns" $IP netns add $ns
    $IP -n $ns link set lo up
done

# ---- refused without IPAM
cni ADD c3 $C3 '{"cniVersion":"1.0.0","name":"dmnet","type":"dummy","ipam":{}}'
has "ADD without IPAM is refused (code 7)" '"code": *7[,}]' printf '%s\n' "$OUT"
eq "the refused ADD left $C3 as it was" "$(links_of $C3)" "lo "

# ---- two containers
cni ADD c1 $C1 "$CONF"
eq "ADD c1 exits 0" "$RC" 0
R1=$OUT
cni ADD c2 $C2 "$CONF"
eq "ADD c2 exits 0" "$RC" 0
R2=$OUT
A1=$(addr_of "$R1" '^10\.')
A2=$(addr_of "$R2" '^10\.')
B1=$(addr_of "$R1" ':')
[ -n "$A1" ] && [ -n "$A2" ] && [ "$A1" != "$A2" ] && ok "the containers got different addresses ($A1, $A2)" ||
    not_ok "the containers got different addresses ('$A1', '$A2')"
has "c1 eth0 is a dummy" 'dummy' $IP -n $C1 -d link show dev eth0
has "c1 eth0 is up" '<[^>]*UP' $IP -n $C1 link show dev eth0
has "c1 eth0 has $A1/24" "inet $A1/24" $IP -n $C1 addr show dev eth0
has "c1 eth0 has $B1/64" "inet6 $B1/64" $IP -n $C1 addr show dev eth0
has "c2 eth0 has $A2/24" "inet $A2/24" $IP -n $C2 addr show dev eth0
M1=$(mac_of "$R1")
has "c1 eth0 has the result's MAC ($M1)" "link/ether $M1 " $IP -n $C1 link show dev eth0
has "the result's interface is sandboxed in $C1" "\"sandbox\": \"/run/netns/$C1\"" printf '%s\n' "$R1"
eq "$C1 has eth0 and lo only" "$(links_of $C1)" "eth0 lo "
check "c1 reaches its own address $A1" $IP netns exec $C1 ping -c 1 -W 5 "$A1"
check "c2 reaches its own address $A2" $IP netns exec $C2 ping -c 1 -W 5 "$A2"

cni CHECK c1 $C1 "$(with_prev "$CONF" "$R1")"
eq "CHECK c1 with its prevResult exits 0" "$RC" 0
$IP -n $C1 link set eth0 down
cni CHECK c1 $C1 "$(with_prev "$CONF" "$R1")"
has "CHECK of a downed link reports a mismatch (code 101)" '"code": *101' printf '%s\n' "$OUT"
$IP -n $C1 link set eth0 up

cni ADD c1b $C1 "$CONF"
[ "$RC" != 0 ] && ok "a second ADD of eth0 into $C1 fails" || not_ok "a second ADD of eth0 into $C1 fails"
eq "the failed ADD released its addresses" "$(reservations)" 4

# ---- DEL
cni DEL c1 $C1 "$CONF"
eq "DEL c1 exits 0" "$RC" 0
check_not "$C1 no longer has eth0" $IP -n $C1 link show dev eth0
cni DEL c1 $C1 "$CONF"
eq "a second DEL c1 exits 0" "$RC" 0
$IP netns del $C2
cni DEL c2 $C2 "$CONF"
eq "DEL c2 after its netns was deleted exits 0" "$RC" 0
eq "no reservation is left" "$(reservations)" 0

finish
