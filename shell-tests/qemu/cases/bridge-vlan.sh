#!/bin/sh
# bridge VLAN options inside the VM (Debian's kernel has bridge VLAN filtering; this
# machine's does not, so shell-tests/t-bridge-vlan.sh skips there). A throwaway "host"
# namespace holds the bridges; the bridge plugin (host-local IPAM, in-process) runs in it:
# - "vlan": a1 and a2 on VLAN 100, b1 on VLAN 200 of the same bridge with the same subnet
#   (disjoint ranges), b2 on VLAN 200 too: the bridge is made with vlan_filtering 1; each
#   host veth has only its VLAN, as PVID and egress untagged (the default VLAN 1 removed);
#   a1 and a2 ping each other, b2 pings b1, and neither VLAN reaches the other; CHECK a1
#   passes;
# - "vlanTrunk": t1 (trunk 100, 200-202, L2 only) has those ids tagged on its port and, per
#   §3.1 of the reference doc, VLAN 1 as PVID untagged; an 802.1Q eth0.100 in t1 pings a1
#   through the trunk;
# - "preserveDefaultVlan": false (ipcni's default, as in §3.1 of the reference doc) removes
#   VLAN 1 from the ports above; true keeps it (egress untagged) next to the PVID VLAN 300;
# - "isGateway" with "vlan": the gateway veth bvgw0.400 holds the gateway address, its peer
#   is on the bridge in VLAN 400 only, two containers (the second finds the gateway made)
#   ping the gateway, CHECK g1 passes;
# - DEL removes the container's port from the bridge, a second DEL exits 0, no container
#   port and no reservation is left (the bridges and the gateway veth stay, as in the
#   reference).
# Port VLANs are read with `bridge -j vlan show` (iproute2's bridge is in the initramfs).
#
# Runs under guest-init.sh: POSIX sh (busybox), root, IPCNI=<plugin dir>, IP=/sbin/ip.
# set -u, T, the assertions (ok, check, has, eq, ...) and finish come from ../case-lib.sh.
. /etc/ipcni-case-lib.sh
BRIDGE=/sbin/bridge

H=bv-host
CTRS="a1 a2 b1 b2 t1 p1 g1 g2"
cleanup() {
    for c in $CTRS; do
        [ -e /run/netns/bv-$c ] && $IP netns del bv-$c
    done
    [ -e /run/netns/$H ] && $IP netns del $H
}
trap cleanup EXIT
DATA=$T/data
BR=bvbr0
GBR=bvgw0
mkdir -p "$T/locks"

# conf NAME BRIDGE IPAM EXTRA_JSON_FIELDS: a bridge config
conf() {
    printf '{"cniVersion":"1.0.0","name":"%s","type":"bridge","bridge":"%s"%s,"ipam":%s}' \
        "$1" "$2" "${4:+,$4}" "$3"
}
# hl SUBNET START END: a host-local IPAM section
hl() {
    printf '{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"%s","rangeStart":"%s","rangeEnd":"%s"}]]}' \
        "$DATA" "$1" "$2" "$3"
}
# cni CMD CTR CONFIG: runs the bridge plugin in the host namespace for container CTR
# (netns bv-CTR, container id CTR, eth0); sets RC and OUT
cni() {
    nsp=/run/netns/bv-$2
    OUT=$(printf '%s' "$3" | $IP netns exec $H env -i PATH=/sbin:/bin IPCNI_LOCK_DIR="$T/locks" \
        CNI_COMMAND="$1" CNI_CONTAINERID="$2" CNI_NETNS="$nsp" CNI_IFNAME=eth0 CNI_PATH="$IPCNI" \
        "$IPCNI/bridge" 2>"$T/err")
    RC=$?
    echo "# bridge $1 $2 $nsp -> exit $RC"
    [ "$RC" != 0 ] && echo "#   stdout: $OUT" && sed 's/^/#   stderr: /' "$T/err"
    return 0
}
# addr_of RESULT: the first address of the result, without its prefix
addr_of() {
    printf '%s\n' "$1" | sed -n 's/.*"address": *"\([^"/]*\)\/.*/\1/p' | head -n 1
}
# host_veth_of RESULT: the name of the result's second interface (the host veth)
host_veth_of() {
    printf '%s\n' "$1" | tr -d ' \n' | sed 's/"name":/\n/g' | sed -n '3s/^"\([^"]*\)".*/\1/p'
}
# reservations NET: how many addresses the network's store holds
reservations() {
    ls "$DATA/$1" 2>/dev/null | grep -cE '^[0-9a-f.:]+$'
}
# vlans_of DEV: the VLANs of bridge port DEV in the host namespace, from `bridge -j vlan
# show`, as "VID[:pvid][:untagged] ..." in the kernel's order; "ERROR" when the command fails
vlans_of() {
    if ! $BRIDGE -n $H -j vlan show dev "$1" >"$T/vl" 2>&1; then
        sed 's/^/#   bridge vlan show: /' "$T/vl" >&2
        echo ERROR
        return 0
    fi
    # [{"ifname":"X","vlans":[{"vlan":1,"flags":["PVID","Egress Untagged"]},{"vlan":100}]}]
    tr '{' '\n' <"$T/vl" | sed -n 's/^"vlan":\([0-9]*\)[^[]*$/\1/p; s/^"vlan":\([0-9]*\).*"flags":\[\([^]]*\)\].*/\1 \2/p' |
        sed 's/"PVID"/:pvid/; s/"Egress Untagged"/:untagged/; s/[ ,]//g' | tr '\n' ' ' | sed 's/ $//'
}
# ports_of BRIDGE: the links enslaved to BRIDGE in the host namespace
ports_of() { $IP -n $H -o link show master "$1" | sed 's/^[0-9]*: \([^:@]*\).*/\1/' | sort | tr '\n' ' '; }
vlan_filtering_of() { $IP -n $H -j -d link show dev "$1" | grep -o '"vlan_filtering":[0-9]*'; }

check "iproute2's bridge is in the VM ($BRIDGE)" test -x $BRIDGE
check "netns add $H" $IP netns add $H
$IP -n $H link set lo up
for c in $CTRS; do
    check "netns add bv-$c" $IP netns add bv-$c
done

# ---- "vlan": two VLANs, same subnet, one bridge
C100=$(conf bv100 $BR "$(hl 10.61.0.0/24 10.61.0.10 10.61.0.99)" '"vlan":100')
C200=$(conf bv200 $BR "$(hl 10.61.0.0/24 10.61.0.100 10.61.0.199)" '"vlan":200')
cni ADD a1 "$C100"
eq "ADD a1 (vlan 100) exits 0" "$RC" 0
RA1=$OUT
cni ADD a2 "$C100"
eq "ADD a2 (vlan 100) exits 0" "$RC" 0
RA2=$OUT
cni ADD b1 "$C200"
eq "ADD b1 (vlan 200) exits 0" "$RC" 0
RB1=$OUT
cni ADD b2 "$C200"
eq "ADD b2 (vlan 200) exits 0" "$RC" 0
RB2=$OUT
A1=$(addr_of "$RA1") A2=$(addr_of "$RA2") B1=$(addr_of "$RB1") B2=$(addr_of "$RB2")
HA1=$(host_veth_of "$RA1") HA2=$(host_veth_of "$RA2") HB1=$(host_veth_of "$RB1") HB2=$(host_veth_of "$RB2")
echo "# a1 $A1 ($HA1), a2 $A2 ($HA2), b1 $B1 ($HB1), b2 $B2 ($HB2)"
[ -n "$A1" ] && [ -n "$A2" ] && [ -n "$B1" ] && [ -n "$B2" ] && ok "the containers got addresses" ||
    not_ok "the containers got addresses ('$A1', '$A2', '$B1', '$B2')"
eq "the bridge $BR was made with vlan_filtering 1" "$(vlan_filtering_of $BR)" '"vlan_filtering":1'
eq "the ports of $BR are the four host veths" "$(ports_of $BR)" "$(printf '%s\n' "$HA1" "$HA2" "$HB1" "$HB2" | sort | tr '\n' ' ')"
eq "a1's port has only VLAN 100, PVID and untagged" "$(vlans_of "$HA1")" "100:pvid:untagged"
eq "a2's port has only VLAN 100, PVID and untagged" "$(vlans_of "$HA2")" "100:pvid:untagged"
eq "b1's port has only VLAN 200, PVID and untagged" "$(vlans_of "$HB1")" "200:pvid:untagged"
check "a1 pings a2 ($A2) on VLAN 100" $IP netns exec bv-a1 ping -c 1 -W 5 "$A2"
check "a2 pings a1 ($A1) on VLAN 100" $IP netns exec bv-a2 ping -c 1 -W 5 "$A1"
check "b2 pings b1 ($B1) on VLAN 200" $IP netns exec bv-b2 ping -c 1 -W 5 "$B1"
check_not "b1 cannot ping a1 ($A1) from VLAN 200" $IP netns exec bv-b1 ping -c 1 -W 1 "$A1"
check_not "a2 cannot ping b2 ($B2) from VLAN 100" $IP netns exec bv-a2 ping -c 1 -W 1 "$B2"
cni CHECK a1 "$(with_prev "$C100" "$RA1")"
eq "CHECK a1 with its prevResult exits 0" "$RC" 0

# ---- "vlanTrunk"
CT1=$(conf bvtrunk $BR '{}' '"vlanTrunk":[{"id":100},{"minID":200,"maxID":202}]')
cni ADD t1 "$CT1"
eq "ADD t1 (trunk 100, 200-202, L2 only) exits 0" "$RC" 0
HT1=$(host_veth_of "$OUT")
eq "t1's port has VLAN 1 PVID untagged and 100, 200-202 tagged" "$(vlans_of "$HT1")" "1:pvid:untagged 100 200 201 202"
check "eth0.100 (802.1Q) in bv-t1" $IP -n bv-t1 link add link eth0 name eth0.100 type vlan id 100
$IP -n bv-t1 addr add 10.61.0.250/24 dev eth0.100
$IP -n bv-t1 link set eth0.100 up
check "t1 pings a1 ($A1) tagged through the trunk" $IP netns exec bv-t1 ping -c 1 -W 5 "$A1"

# ---- "preserveDefaultVlan": true
CP1=$(conf bvkeep $BR '{}' '"vlan":300,"preserveDefaultVlan":true')
cni ADD p1 "$CP1"
eq "ADD p1 (vlan 300, preserveDefaultVlan) exits 0" "$RC" 0
HP1=$(host_veth_of "$OUT")
eq "p1's port keeps VLAN 1 (untagged) next to VLAN 300 (PVID, untagged)" "$(vlans_of "$HP1")" "1:untagged 300:pvid:untagged"

# ---- "isGateway" with "vlan": the gateway veth bvgw0.400
CG=$(conf bvgw $GBR "$(hl 10.62.0.0/24 10.62.0.2 10.62.0.99)" '"vlan":400,"isGateway":true')
cni ADD g1 "$CG"
eq "ADD g1 (vlan 400, isGateway) exits 0" "$RC" 0
RG1=$OUT
cni ADD g2 "$CG"
eq "ADD g2 (vlan 400, isGateway; the gateway exists) exits 0" "$RC" 0
RG2=$OUT
eq "the bridge $GBR was made with vlan_filtering 1" "$(vlan_filtering_of $GBR)" '"vlan_filtering":1'
has "$GBR.400 holds the gateway 10.62.0.1/24" 'inet 10\.62\.0\.1/24 ' $IP -n $H addr show dev $GBR.400
GWP=$($IP -n $H -o link show master $GBR | sed -n 's/^[0-9]*: \(vethgw[^:@]*\).*/\1/p')
[ -n "$GWP" ] && ok "the gateway veth's peer $GWP is a port of $GBR" || not_ok "the gateway veth's peer is a port of $GBR"
eq "the gateway port has only VLAN 400, PVID and untagged" "$(vlans_of "${GWP:-none}")" "400:pvid:untagged"
eq "g1's port has only VLAN 400, PVID and untagged" "$(vlans_of "$(host_veth_of "$RG1")")" "400:pvid:untagged"
check "g1 ($(addr_of "$RG1")) pings the gateway 10.62.0.1" $IP netns exec bv-g1 ping -c 1 -W 5 10.62.0.1
check "g2 ($(addr_of "$RG2")) pings the gateway 10.62.0.1" $IP netns exec bv-g2 ping -c 1 -W 5 10.62.0.1
cni CHECK g1 "$(with_prev "$CG" "$RG1")"
eq "CHECK g1 with its prevResult exits 0" "$RC" 0

# ---- DEL
cni DEL a1 "$C100"
eq "DEL a1 exits 0" "$RC" 0
check_not "bv-a1 no longer has eth0" $IP -n bv-a1 link show dev eth0
check_not "a1's host veth $HA1 is gone" $IP -n $H link show dev "$HA1"
case " $(ports_of $BR)" in
    *" $HA1 "*) not_ok "$BR no longer has a1's port $HA1 (ports: $(ports_of $BR))" ;;
    *) ok "$BR no longer has a1's port" ;;
esac
cni DEL a1 "$C100"
eq "a second DEL a1 exits 0" "$RC" 0
for c in a2:C100 b1:C200 b2:C200 t1:CT1 p1:CP1 g1:CG g2:CG; do
    eval "cf=\$${c#*:}"
    cni DEL "${c%%:*}" "$cf"
    eq "DEL ${c%%:*} exits 0" "$RC" 0
done
eq "no container port is left on $BR" "$(ports_of $BR)" ""
eq "only the gateway port is left on $GBR" "$(ports_of $GBR)" "${GWP:-none} "
for n in bv100 bv200 bvgw; do
    eq "no reservation is left in $n" "$(reservations $n)" 0
done

finish
