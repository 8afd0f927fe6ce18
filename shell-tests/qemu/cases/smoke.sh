#!/bin/sh
# smoke: proves the VM harness end to end. Inside the VM (Debian's kernel): two namespaces
# joined by a veth ping each other; a dummy, an ipvlan and a vlan on it, a vrf holding the
# vlan, a macvlan and a vxlan are made in a namespace with iproute2; the static ipcni runs
# (--version, VERSION lists 1.1.0); the loopback plugin brings lo up in a fresh namespace
# (through nsenter --net=PATH) and DEL brings it down again.
#
# Runs under guest-init.sh: POSIX sh (busybox), root, IPCNI=<plugin dir>, IP=/sbin/ip.
# set -u, T, the assertions (ok, check, has, eq, ...) and finish come from ../case-lib.sh.
. /etc/ipcni-case-lib.sh

A=smoke-a B=smoke-b K=smoke-k L=smoke-lo
cleanup() {
    for ns in $A $B $K $L; do
        [ -e /run/netns/$ns ] && $IP netns del $ns
    done
}
trap cleanup EXIT

# ---- two namespaces joined by a veth, ping across
check "netns add $A" $IP netns add $A
check "netns add $B" $IP netns add $B
check "veth va ($A) <-> vb ($B)" $IP link add va netns $A type veth peer name vb netns $B
check "address on va" $IP -n $A addr add 10.99.0.1/24 dev va
check "address on vb" $IP -n $B addr add 10.99.0.2/24 dev vb
check "va up" $IP -n $A link set va up
check "vb up" $IP -n $B link set vb up
check "ping $A -> $B over the veth" $IP netns exec $A ping -c 1 -W 5 10.99.0.2
check "ping $B -> $A over the veth" $IP netns exec $B ping -c 1 -W 5 10.99.0.1

# ---- the link types the host kernel lacks, in a namespace
check "netns add $K" $IP netns add $K
check "dummy d0" $IP -n $K link add d0 type dummy
check "d0 up" $IP -n $K link set d0 up
check "ipvlan i0 on d0" $IP -n $K link add link d0 name i0 type ipvlan mode l2
check "vlan d0.10 on d0" $IP -n $K link add link d0 name d0.10 type vlan id 10
check "vrf vrf0 (table 10)" $IP -n $K link add vrf0 type vrf table 10
check "d0.10 enslaved to vrf0" $IP -n $K link set d0.10 master vrf0
check "dummy d1" $IP -n $K link add d1 type dummy
check "macvlan m0 on d1" $IP -n $K link add link d1 name m0 type macvlan mode bridge
check "vxlan vx0 (vni 42)" $IP -n $K link add vx0 type vxlan id 42 dstport 4789 dev d0
check "bridge br0" $IP -n $K link add br0 type bridge
has "d0 is a dummy" 'dummy' $IP -n $K -d link show dev d0
has "i0 is an ipvlan in l2 mode" 'ipvlan +mode +l2' $IP -n $K -d link show dev i0
has "d0.10 is an 802.1Q vlan with id 10, in vrf0" 'vlan protocol 802.1Q id 10' $IP -n $K -d link show dev d0.10
has "d0.10's master is vrf0" 'master vrf0' $IP -n $K link show dev d0.10
has "vrf0 is a vrf with table 10" 'vrf table 10' $IP -n $K -d link show dev vrf0
has "m0 is a macvlan" 'macvlan +mode +bridge' $IP -n $K -d link show dev m0
has "vx0 is a vxlan with id 42" 'vxlan id 42' $IP -n $K -d link show dev vx0
echo "# links in $K:"
$IP -n $K -br -d link show | sed 's/^/#   /'

# ---- the static ipcni
has "ipcni --version" '^ipcni [0-9]' "$IPCNI/ipcni" --version
echo "# $(cat "$T/out")"
echo '{"cniVersion":"1.0.0"}' >"$T/version-in"
has "bridge VERSION lists 1.1.0" '"1\.1\.0"' env CNI_COMMAND=VERSION "$IPCNI/bridge" <"$T/version-in"
echo "# VERSION: $(cat "$T/out")"

# ---- loopback ADD in a fresh namespace: lo comes up (container side via nsenter --net=)
check "netns add $L" $IP netns add $L
has "lo starts down in $L" 'state (DOWN|UNKNOWN)' $IP -n $L link show dev lo
LOCONF='{"cniVersion":"1.0.0","name":"lo","type":"loopback"}'
cni() { # CMD: runs the loopback plugin on $L
    printf '%s' "$LOCONF" | env CNI_COMMAND="$1" CNI_CONTAINERID=x CNI_NETNS=/run/netns/$L CNI_IFNAME=lo \
        CNI_PATH="$IPCNI" "$IPCNI/loopback"
}
has "loopback ADD reports lo with 127.0.0.1/8" '"127\.0\.0\.1/8"' cni ADD
echo "# ADD result: $(cat "$T/out")"
has "lo is UP in $L after ADD" '<LOOPBACK,UP' $IP -n $L link show dev lo
check "ping 127.0.0.1 inside $L" $IP netns exec $L ping -c 1 -W 2 127.0.0.1
check "loopback DEL" cni DEL
if $IP -n $L link show dev lo | grep -q '<LOOPBACK,UP'; then
    not_ok "lo is down in $L after DEL"
else
    ok "lo is down in $L after DEL"
fi

finish
