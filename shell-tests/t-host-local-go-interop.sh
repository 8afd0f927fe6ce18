#!/bin/bash
# host-local interoperates with the reference (Go) host-local from Debian's
# containernetworking-plugins on one store: each releases what the other reserved, each
# skips what the other holds, and the reservation files are byte-identical in format
# (`<id>\r\n<ifname>`, no trailing newline).
. "$(dirname "$0")/lib.sh"

GO=/usr/lib/cni
[[ -x $GO/host-local ]] || skip "reference plugin $GO/host-local not installed (apt-get install containernetworking-plugins)"

setup_host
mk_ns c1
NET=interop
STORE=$(store_dir $NET)
CONF=$(printf '{"cniVersion":"1.0.0","name":"%s","type":"host-local","ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.94.0.0/24"}]]}}' \
    "$NET" "$T_TMP/data")

go_hl() { CNI_BINDIR=$GO CNI_PLUGIN=host-local cni "$@"; }
our_hl() { CNI_PLUGIN=host-local cni "$@"; }

# file_is FILE ID IFNAME: FILE holds exactly "<ID>\r\n<IFNAME>".
file_is() { cmp -s "$1" <(printf '%s\r\n%s' "$2" "$3"); }

# --- Go reserves A, ipcni releases it
go_hl ADD ctr-a "$NS_c1" eth0 "$CONF"
assert_rc 0 "Go host-local ADD ctr-a"
AA=$(result_addr "$CNI_OUT")
check "Go wrote a reservation for $AA" test -f "$STORE/$AA"
check "the Go reservation is <id>\\r\\n<ifname> without a newline" file_is "$STORE/$AA" ctr-a eth0
GO_MODE=$(stat -c %a "$STORE/$AA" 2>/dev/null)
GO_LAST=$(cat "$STORE/last_reserved_ip.0" 2>/dev/null)
our_hl DEL ctr-a "$NS_c1" eth0 "$CONF"
assert_rc 0 "ipcni host-local DEL ctr-a"
check_not "ipcni removed Go's reservation $AA" test -e "$STORE/$AA"

# --- ipcni reserves B, Go releases it
our_hl ADD ctr-b "$NS_c1" eth0 "$CONF"
assert_rc 0 "ipcni host-local ADD ctr-b"
AB=$(result_addr "$CNI_OUT")
check "ipcni wrote a reservation for $AB" test -f "$STORE/$AB"
check "ipcni's reservation is byte-identical in format to Go's (<id>\\r\\n<ifname>)" file_is "$STORE/$AB" ctr-b eth0
log "ipcni file: $(od -c "$STORE/$AB" 2>/dev/null | head -n 2 | tr '\n' ' ')"
# Not part of the format: Go creates reservations 0644, ipcni 0600 (readable by root
# either way); noted, not asserted.
log "file modes: Go $GO_MODE, ipcni $(stat -c %a "$STORE/$AB" 2>/dev/null)"
assert_eq "$(cat "$STORE/last_reserved_ip.0" 2>/dev/null)" "$AB" "ipcni updates last_reserved_ip.0 (Go wrote '$GO_LAST' for its own)"
check "last_reserved_ip.0 has no trailing newline, as Go writes it" cmp -s "$STORE/last_reserved_ip.0" <(printf '%s' "$AB")
go_hl DEL ctr-b "$NS_c1" eth0 "$CONF"
assert_rc 0 "Go host-local DEL ctr-b"
check_not "Go removed ipcni's reservation $AB" test -e "$STORE/$AB"

# --- each skips what the other holds
go_hl ADD ctr-c "$NS_c1" eth0 "$CONF"
assert_rc 0 "Go ADD ctr-c"
AC=$(result_addr "$CNI_OUT")
our_hl ADD ctr-d "$NS_c1" eth0 "$CONF"
assert_rc 0 "ipcni ADD ctr-d"
AD=$(result_addr "$CNI_OUT")
assert_ne "$AD" "$AC" "ipcni does not hand out the address Go reserved"
go_hl ADD ctr-e "$NS_c1" eth0 "$CONF"
assert_rc 0 "Go ADD ctr-e"
AE=$(result_addr "$CNI_OUT")
assert_ne "$AE" "$AD" "Go does not hand out the address ipcni reserved"

# The same attachment again (Go refuses a duplicate; returning the existing address is
# fine too): either way no second address is reserved for ctr-c.
our_hl ADD ctr-c "$NS_c1" eth0 "$CONF"
if [[ $CNI_RC == 0 ]]; then
    assert_eq "$(result_addr "$CNI_OUT")" "$AC" "ipcni ADD for Go's ctr-c returns its existing address"
else
    assert_json "${CNI_OUT:-null}" "d and isinstance(d.get('code'), int) and d.get('msg')" "ipcni ADD for Go's ctr-c fails with a JSON error"
fi
assert_eq "$(grep -lsF ctr-c "$STORE"/* | grep -c .)" 1 "ctr-c holds exactly one reservation"

for id in ctr-c ctr-e; do
    our_hl DEL $id "$NS_c1" eth0 "$CONF"
    assert_rc 0 "ipcni DEL $id"
done
go_hl DEL ctr-d "$NS_c1" eth0 "$CONF"
assert_rc 0 "Go DEL ctr-d"
assert_empty "$(reservations "$STORE")" "the shared store is empty again"

finish
