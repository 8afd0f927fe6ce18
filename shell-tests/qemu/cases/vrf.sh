#!/bin/sh
# vrf inside the VM (Debian's kernel has vrf; this machine's does not). A throwaway "host"
# namespace holds one end of a veth per container; the other end (eth0, with IPv4 and IPv6
# addresses and default routes) is in the container, as a main plugin would leave it. The
# vrf plugin then runs chained, its prevResult in the config:
# - ADD makes the VRF `blue` (table 1: the first free id), enslaves eth0, keeps eth0's
#   addresses (IPv6 ones re-added), moves the default routes into the VRF's table, and
#   prints prevResult; CHECK passes;
# - a second interface joins `blue` with "table": 1; "table": 7 for `blue` is refused;
# - a VRF with an explicit table (red, 42) in another container;
# - DEL of eth0 leaves `blue` (eth1 is still in it), DEL of eth1 deletes it, a second DEL
#   and a DEL after the netns was deleted exit 0;
# - ADD without prevResult or without vrfname is refused with code 7, cniVersion 0.3.0
#   with code 1.
#
# Runs under guest-init.sh: POSIX sh (busybox), root, IPCNI=<plugin dir>, IP=/sbin/ip.
# set -u, T, the assertions (ok, check, has, eq, ...) and finish come from ../case-lib.sh.
. /etc/ipcni-case-lib.sh

H=vrf-host C1=vrf-c1 C2=vrf-c2
cleanup() {
    for ns in $C2 $C1 $H; do
        [ -e /run/netns/$ns ] && $IP netns del $ns
    done
}
trap cleanup EXIT

# cni CMD NETNS IFNAME CONFIG: runs the vrf plugin in the host namespace; sets RC and OUT
cni() {
    nsp=/run/netns/$2
    [ -z "$2" ] && nsp=""
    OUT=$(printf '%s' "$4" | $IP netns exec $H env -i PATH=/sbin:/bin \
        CNI_COMMAND="$1" CNI_CONTAINERID=ctr-$2-$3 CNI_NETNS="$nsp" CNI_IFNAME="$3" CNI_PATH="$IPCNI" \
        "$IPCNI/vrf" 2>"$T/err")
    RC=$?
    echo "# vrf $1 ${nsp:-<no netns>} $3 -> exit $RC"
    [ "$RC" != 0 ] && echo "#   stdout: $OUT" && sed 's/^/#   stderr: /' "$T/err"
    return 0
}
# code_is WHAT CODE: the last call failed with a CNI error of that code
code_is() {
    if [ "$RC" != 0 ] && printf '%s\n' "$OUT" | grep -Eq "\"code\": *$2[,}]"; then
        ok "$1 (code $2)"
    else
        not_ok "$1 (exit $RC, wanted code $2: $OUT)"
    fi
}
# attach NS HOSTEND IF N: a veth HOSTEND (host) <-> IF (NS) with 10.60.N.2/24 and
# fd00:60:N::2/64 and default routes via .1 / ::1, as a main plugin leaves it
attach() {
    $IP -n $H link add "$2" type veth peer name "$3" netns "$1" &&
        $IP -n $H link set "$2" up &&
        $IP -n "$1" addr add "10.60.$4.2/24" dev "$3" &&
        $IP -n "$1" addr add "fd00:60:$4::2/64" dev "$3" nodad &&
        $IP -n "$1" link set "$3" up &&
        $IP -n "$1" route add default via "10.60.$4.1" dev "$3" metric "${5:-0}" &&
        $IP -n "$1" -6 route add default via "fd00:60:$4::1" dev "$3" metric "${5:-1024}"
}
# prev NS HOSTEND IF N: the prevResult of such an attachment
prev() {
    printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","mac":"02:00:00:00:00:01"},{"name":"%s","mac":"02:00:00:00:00:02","sandbox":"/run/netns/%s"}],"ips":[{"address":"10.60.%s.2/24","gateway":"10.60.%s.1","interface":1},{"address":"fd00:60:%s::2/64","gateway":"fd00:60:%s::1","interface":1}],"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]}' \
        "$2" "$3" "$1" "$4" "$4" "$4" "$4"
}
# conf VERSION EXTRA PREV: a vrf config
conf() {
    printf '{"cniVersion":"%s","name":"vrfnet","type":"vrf"%s%s}' "$1" "${2:+,$2}" "${3:+,\"prevResult\":$3}"
}

check "netns add $H" $IP netns add $H
check "netns add $C1" $IP netns add $C1
check "netns add $C2" $IP netns add $C2
$IP -n $H link set lo up
check "veth vh0 <-> $C1 eth0 with addresses and default routes" attach $C1 vh0 eth0 1
check "veth vh1 <-> $C1 eth1 (default routes at metric 200: eth0 has the first)" attach $C1 vh1 eth1 2 200
check "veth vh2 <-> $C2 eth0" attach $C2 vh2 eth0 3
P0=$(prev $C1 vh0 eth0 1)
P1=$(prev $C1 vh1 eth1 2)
P2=$(prev $C2 vh2 eth0 3)

# ---- ADD eth0: a new VRF on the first free table
cni ADD $C1 eth0 "$(conf 1.0.0 '"vrfname":"blue"' "$P0")"
eq "ADD eth0 into blue exits 0" "$RC" 0
has "the result is prevResult (eth0 in $C1, fd00:60:1::2)" "fd00:60:1::2/64" printf '%s\n' "$OUT"
has "blue is a vrf on table 1" 'vrf table 1 ' $IP -n $C1 -d link show dev blue
has "blue is up" '<[^>]*UP' $IP -n $C1 link show dev blue
has "eth0's master is blue" 'master blue' $IP -n $C1 link show dev eth0
has "eth0 keeps 10.60.1.2/24" 'inet 10\.60\.1\.2/24' $IP -n $C1 addr show dev eth0
has "eth0 has fd00:60:1::2/64 again" 'inet6 fd00:60:1::2/64' $IP -n $C1 addr show dev eth0
has "the IPv4 default route is in blue's table" '^default via 10\.60\.1\.1 dev eth0' $IP -n $C1 route show vrf blue
has "the IPv6 default route is in blue's table" '^default via fd00:60:1::1 dev eth0' $IP -n $C1 -6 route show vrf blue
echo "# routes of vrf blue:"
$IP -n $C1 route show vrf blue | sed 's/^/#   /'
$IP -n $C1 -6 route show vrf blue | sed 's/^/#   /'

cni CHECK $C1 eth0 "$(conf 1.0.0 '"vrfname":"blue"' "$P0")"
eq "CHECK eth0 in blue exits 0" "$RC" 0
cni CHECK $C1 eth1 "$(conf 1.0.0 '"vrfname":"blue"' "$P1")"
code_is "CHECK of eth1, not yet in blue, fails" 101

# ---- a second interface, and a conflicting table
cni ADD $C1 eth1 "$(conf 1.0.0 '"vrfname":"blue","table":7' "$P1")"
code_is "ADD eth1 into blue with table 7 (blue has 1) is refused" 7
hasnt "the refused ADD left eth1 outside blue" 'master' $IP -n $C1 link show dev eth1
cni ADD $C1 eth1 "$(conf 1.0.0 '"vrfname":"blue","table":1' "$P1")"
eq "ADD eth1 into blue with table 1 exits 0" "$RC" 0
has "eth1's master is blue" 'master blue' $IP -n $C1 link show dev eth1
cni ADD $C1 eth1 "$(conf 1.0.0 '"vrfname":"green"' "$P1")"
code_is "ADD eth1 (already in blue) into green is refused" 7
check_not "the refused ADD removed the green VRF it would have made" $IP -n $C1 link show dev green

# ---- an explicit table in another container
cni ADD $C2 eth0 "$(conf 0.4.0 '"vrfname":"red","table":42' "$P2")"
eq "ADD $C2 eth0 into red (table 42, 0.4.0) exits 0" "$RC" 0
has "red is a vrf on table 42" 'vrf table 42 ' $IP -n $C2 -d link show dev red
has "$C2's default route is in table 42" '^default via 10\.60\.3\.1 dev eth0' $IP -n $C2 route show table 42

# ---- DEL
cni DEL $C1 eth0 "$(conf 1.0.0 '"vrfname":"blue"' "$P0")"
eq "DEL eth0 exits 0" "$RC" 0
hasnt "eth0 is no longer in blue" 'master' $IP -n $C1 link show dev eth0
check "blue stays while eth1 is in it" $IP -n $C1 link show dev blue
cni DEL $C1 eth1 "$(conf 1.0.0 '"vrfname":"blue"' "$P1")"
eq "DEL eth1 exits 0" "$RC" 0
check_not "blue is deleted with its last member" $IP -n $C1 link show dev blue
check "eth1 is still there" $IP -n $C1 link show dev eth1
cni DEL $C1 eth1 "$(conf 1.0.0 '"vrfname":"blue"' "$P1")"
eq "a second DEL exits 0" "$RC" 0
$IP netns del $C2
cni DEL $C2 eth0 "$(conf 1.0.0 '"vrfname":"red","table":42' "$P2")"
eq "DEL after the netns was deleted exits 0" "$RC" 0

# ---- refused input
cni ADD $C1 eth0 "$(conf 1.0.0 '"vrfname":"blue"' "")"
code_is "ADD without prevResult is refused" 7
cni ADD $C1 eth0 "$(conf 1.0.0 '' "$P0")"
code_is "ADD without vrfname is refused" 7
cni ADD $C1 eth0 "$(conf 0.3.0 '"vrfname":"blue"' "$P0")"
code_is "cniVersion 0.3.0 is refused" 1
check_not "no VRF was made by the refused ADDs" $IP -n $C1 link show dev blue

finish
