#!/bin/bash
# host-device: veth ends made in the throwaway host namespace are moved into a container
# by name and by hwaddr, appear there as CNI_IFNAME with the IPAM address (and reach the
# peer end left on the host), and DEL moves them back under their original name, with
# and without prevResult, after a rename inside the container, and without the state
# file (the alias). A failed ADD moves the device back, up as it was. DEL after the
# namespace is gone, and repeated DELs, exit 0. GC drops state files of attachments that
# are not valid. The state files live under this test's temp dir (IPCNI_STATE_DIR).
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
NET=hdnet
STATE="$T_TMP/state"
SDIR="$STATE/host-device/$NET"
STORE=$(store_dir $NET)

# hd_cni CMD ID NETNS IFNAME CONFIG: as lib.sh's cni, plus IPCNI_STATE_DIR.
hd_cni() {
    local nspath=$3
    [[ -n $nspath && $nspath != */* ]] && nspath=/run/netns/$nspath
    plugin_raw host-device "$5" IPCNI_STATE_DIR="$STATE" CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
        CNI_NETNS="$nspath" CNI_IFNAME="$4" CNI_PATH="$IPCNI_BIN" CNI_ARGS=""
}
hd_conf() { # SELECTOR_FIELDS [IPAM_JSON]
    printf '{"cniVersion":"1.0.0","name":"%s","type":"host-device",%s%s}' "$NET" "$1" "${2:+,\"ipam\":$2}"
}
IPAM=$(printf '{"type":"host-local","dataDir":"%s","subnet":"10.78.0.0/24","rangeStart":"10.78.0.10"}' "$T_TMP/data")
up_flag() { jget "$(link_json "$1" "$2")" "'UP' in d['flags']"; }

# Two veth pairs in the host namespace: hd0 (peer hd0p keeps 10.78.0.254) and hd1.
in_host ip link add name hd0 type veth peer name hd0p
in_host ip link add name hd1 address 02:78:00:00:00:01 type veth peer name hd1p
in_host ip addr add 10.78.0.254/24 dev hd0p
in_host ip link set hd0p up
in_host ip link set hd1p up
in_host ip link set hd0 up

# --- by name, with IPAM
CONF=$(hd_conf '"device":"hd0"' "$IPAM")
hd_cni ADD ctr-1 "$NS_c1" net1 "$CONF"
assert_rc 0 "ADD by device name"
R=$CNI_OUT
MAC0=$(jget "$R" "d['interfaces'][0]['mac']")
assert_json "$R" "d['interfaces'][0]['name'] == 'net1' and d['interfaces'][0]['sandbox'] == '/run/netns/$NS_c1'" "result names net1 in the sandbox"
assert_json "$R" "d['ips'][0]['address'] == '10.78.0.10/24' and d['ips'][0]['interface'] == 0" "result has the IPAM address"
check_not "hd0 left the host namespace" ip -n "$HOST" link show hd0
L=$(link_json "$NS_c1" net1)
assert_json "${L:-null}" "d and d['address'] == '$MAC0' and d.get('ifalias') == 'hd0' and 'UP' in d['flags']" \
    "net1 in the container is hd0 (MAC, alias), up"
assert_eq "$(addrs "$NS_c1" net1)" "10.78.0.10/24" "net1 has the IPAM address"
check "the container reaches the peer end on the host" pings "$NS_c1" 10.78.0.254
check "a state file records the attachment" test -f "$SDIR/ctr-1@net1.json"
assert_json "$(cat "$SDIR/ctr-1@net1.json" 2>/dev/null || echo null)" "d and d['device'] == 'hd0' and d['hwaddr'] == '$MAC0'" \
    "the state file holds the original name and MAC"

hd_cni CHECK ctr-1 "$NS_c1" net1 "$(with_prev "$CONF" "$R")"
assert_rc 0 "CHECK passes"

# --- DEL without prevResult
hd_cni DEL ctr-1 "$NS_c1" net1 "$CONF"
assert_rc 0 "DEL without prevResult"
L=$(link_json "$HOST" hd0)
assert_json "${L:-null}" "d and d['address'] == '$MAC0'" "hd0 is back in the host under its original name"
check_not "net1 is gone from the container" ip -n "$NS_c1" link show net1
check_not "the state file is removed" test -e "$SDIR/ctr-1@net1.json"
assert_empty "$(reservations "$STORE")" "the reservation is released"
hd_cni DEL ctr-1 "$NS_c1" net1 "$CONF"
assert_rc 0 "a second DEL exits 0"

# --- by hwaddr, DEL with prevResult
CONF1=$(hd_conf '"hwaddr":"02:78:00:00:00:01"' "$IPAM")
hd_cni ADD ctr-2 "$NS_c1" eth0 "$CONF1"
assert_rc 0 "ADD by hwaddr"
R1=$CNI_OUT
assert_json "$(link_json "$NS_c1" eth0 || echo null)" "d and d['address'] == '02:78:00:00:00:01'" "hd1 appears as eth0"
check_not "hd1 left the host namespace" ip -n "$HOST" link show hd1
assert_eq "$(addrs "$NS_c1" eth0)" "$(result_addr "$R1")/24" "eth0 has the IPAM address"
hd_cni DEL ctr-2 "$NS_c1" eth0 "$(with_prev "$CONF1" "$R1")"
assert_rc 0 "DEL with prevResult"
assert_json "$(link_json "$HOST" hd1 || echo null)" "d and d['address'] == '02:78:00:00:00:01'" "hd1 is back under its name"
check_not "eth0 is gone from the container" ip -n "$NS_c1" link show eth0

# --- renamed inside the container: found again by its MAC
hd_cni ADD ctr-3 "$NS_c1" net1 "$(hd_conf '"device":"hd0"')"
assert_rc 0 "ADD hd0 again (L2 only)"
in_ns "$NS_c1" ip link set net1 down
in_ns "$NS_c1" ip link set net1 name weird0
hd_cni DEL ctr-3 "$NS_c1" net1 "$(hd_conf '"device":"hd0"')"
assert_rc 0 "DEL after the container renamed the device"
check "hd0 is back in the host" ip -n "$HOST" link show hd0
check_not "weird0 is gone from the container" ip -n "$NS_c1" link show weird0

# --- no state file: the alias says where it came from
hd_cni ADD ctr-4 "$NS_c1" net1 "$(hd_conf '"device":"hd0"')"
assert_rc 0 "ADD hd0 once more"
rm -f "$SDIR/ctr-4@net1.json"
hd_cni DEL ctr-4 "$NS_c1" net1 "$(hd_conf '"device":"hd0"')"
assert_rc 0 "DEL without a state file"
check "hd0 is back in the host (by its alias)" ip -n "$HOST" link show hd0

# --- a failed ADD moves the device back, up as it was, and keeps no state
in_host ip link set hd0 up
BAD=$(hd_conf '"device":"hd0"' "$(printf '{"type":"host-local","dataDir":"%s","subnet":"10.78.0.0/24","routes":[{"dst":"10.99.0.0/16","gw":"10.98.0.1"}]}' "$T_TMP/data")")
hd_cni ADD ctr-5 "$NS_c1" net1 "$BAD"
assert_rc nonzero "ADD with an unreachable route gateway fails"
check "hd0 is back in the host after the failed ADD" ip -n "$HOST" link show hd0
assert_eq "$(up_flag "$HOST" hd0)" "true" "and up again, as it was"
check_not "net1 is not left in the container" ip -n "$NS_c1" link show net1
check_not "no state file is left" test -e "$SDIR/ctr-5@net1.json"
assert_empty "$(reservations "$STORE")" "no reservation is left"

# --- the namespace goes away: DEL exits 0 and drops the state
hd_cni ADD ctr-6 "$NS_c2" eth0 "$CONF1"
assert_rc 0 "ADD hd1 into the second container"
del_ns "$NS_c2"
hd_cni DEL ctr-6 "/run/netns/$NS_c2" eth0 "$CONF1"
assert_rc 0 "DEL after the namespace is gone exits 0"
check_not "its state file is removed" test -e "$SDIR/ctr-6@eth0.json"
assert_empty "$(reservations "$STORE")" "its reservation is released"
hd_cni DEL ctr-6 "" eth0 "$CONF1"
assert_rc 0 "DEL with an empty CNI_NETNS exits 0"

# --- GC: state files of attachments that are not valid go
hd_cni ADD ctr-7 "$NS_c1" net1 "$(hd_conf '"device":"hd0"')"
assert_rc 0 "ADD for GC"
printf '{"device":"gone0"}\n' >"$SDIR/ctr-stale@eth0.json"
GC=$(printf '{"cniVersion":"1.1.0","name":"%s","type":"host-device","device":"hd0","cni.dev/valid-attachments":[{"containerID":"ctr-7","ifname":"net1"}]}' "$NET")
hd_cni GC "" "" "" "$GC"
assert_rc 0 "GC exits 0"
check_not "GC removed the stale state file" test -e "$SDIR/ctr-stale@eth0.json"
check "GC kept the valid one" test -e "$SDIR/ctr-7@net1.json"
hd_cni DEL ctr-7 "$NS_c1" net1 "$(hd_conf '"device":"hd0"')"
assert_rc 0 "DEL after GC"
check "hd0 is back" ip -n "$HOST" link show hd0
assert_empty "$(ls -A "$SDIR" 2>/dev/null)" "no state file is left"

finish
