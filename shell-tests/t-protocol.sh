#!/bin/bash
# The CNI protocol around the plugins: VERSION, the about text, error codes for a bad
# environment, bad JSON and unsupported versions, results in old formats, STATUS and GC.
. "$(dirname "$0")/lib.sh"

setup_host
mk_ns c1
mk_ns c2
mk_ns c3
ALL='["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]'
ENV_C1=(CNI_CONTAINERID=ctr-p CNI_NETNS=/run/netns/$NS_c1 CNI_IFNAME=eth0 CNI_PATH=$IPCNI_BIN)

# --- VERSION
for p in bridge host-local loopback; do
    plugin_raw $p '{"cniVersion":"1.0.0"}' CNI_COMMAND=VERSION CNI_NETNS=dummy CNI_IFNAME=dummy CNI_PATH=dummy
    assert_rc 0 "$p VERSION exits 0"
    assert_json "${CNI_OUT:-null}" "d and sorted(d['supportedVersions']) == sorted($ALL)" "$p VERSION lists all 7 versions"
    assert_json "${CNI_OUT:-null}" "d and d['cniVersion'] == '1.1.0'" "$p VERSION answers in cniVersion 1.1.0"
done
plugin_raw bridge '' CNI_COMMAND=VERSION
assert_rc 0 "VERSION with empty stdin exits 0"
assert_json "${CNI_OUT:-null}" "d and len(d['supportedVersions']) == 7" "... and still lists the versions"

# --- no CNI_COMMAND: about text on stderr only
for p in bridge host-local loopback; do
    plugin_raw $p '{}'
    assert_rc 0 "$p without CNI_COMMAND exits 0"
    assert_empty "$CNI_OUT" "$p without CNI_COMMAND prints nothing on stdout"
    check "$p without CNI_COMMAND prints its about text on stderr" grep -q "CNI" <<<"$CNI_ERR"
done

# --- bad environment and input
BR_CONF=$(bridge_conf protonet cni-prot0 10.95.0.0/24 '"isGateway":true')
plugin_raw bridge "$BR_CONF" CNI_COMMAND=FROBNICATE "${ENV_C1[@]}"
assert_error_code 4 "unknown CNI_COMMAND"
check "... names the command" grep -q FROBNICATE <<<"$CNI_OUT"
plugin_raw bridge "$BR_CONF" CNI_COMMAND=ADD CNI_NETNS=/run/netns/$NS_c1 CNI_PATH=$IPCNI_BIN
assert_error_code 4 "ADD without CNI_CONTAINERID and CNI_IFNAME"
plugin_raw bridge '{"cniVersion": "1.0.0", "name": ' CNI_COMMAND=ADD "${ENV_C1[@]}"
assert_error_code 6 "truncated JSON config"
plugin_raw bridge 'not json at all' CNI_COMMAND=ADD "${ENV_C1[@]}"
assert_error_code 6 "config that is not JSON"
plugin_raw bridge "$(with_key "$BR_CONF" cniVersion '"9.9.9"')" CNI_COMMAND=ADD "${ENV_C1[@]}"
assert_error_code 1 "unsupported cniVersion 9.9.9"
plugin_raw bridge "$BR_CONF" CNI_COMMAND=ADD CNI_CONTAINERID=ctr-p CNI_NETNS=/etc/hostname CNI_IFNAME=eth0 CNI_PATH=$IPCNI_BIN
assert_json "${CNI_OUT:-null}" "d and d['code'] in (4, 8) and d.get('msg')" "CNI_NETNS that is not a namespace is refused"
plugin_raw bridge "$BR_CONF" CNI_COMMAND=ADD CNI_CONTAINERID=ctr-p CNI_NETNS=/run/netns/${T_PREFIX}missing CNI_IFNAME=eth0 CNI_PATH=$IPCNI_BIN
assert_rc nonzero "ADD with a CNI_NETNS that does not exist fails"
assert_json "${CNI_OUT:-null}" "d and isinstance(d.get('code'), int) and d.get('msg')" "... with a JSON error"
# The host namespace itself as the container: refused, nothing moved out of it.
plugin_raw bridge "$BR_CONF" CNI_COMMAND=ADD CNI_CONTAINERID=ctr-p CNI_NETNS=/run/netns/$HOST CNI_IFNAME=eth0 CNI_PATH=$IPCNI_BIN
assert_rc nonzero "ADD with CNI_NETNS = the plugin's own namespace fails"
assert_json "${CNI_OUT:-null}" "d and isinstance(d.get('code'), int) and d.get('msg')" "... with a JSON error"
assert_eq "$(links "$HOST")" lo "failed calls left the host namespace with only lo"
assert_empty "$(reservations "$T_TMP/data/protonet")" "failed calls reserved nothing"

C031=$(CNI_VERSION_CONF=0.3.1 bridge_conf protonet cni-prot0 10.95.0.0/24 '"isGateway":true')
plugin_raw bridge "$(with_prev "$C031" '{"cniVersion":"0.3.1","interfaces":[],"ips":[]}')" CNI_COMMAND=CHECK "${ENV_C1[@]}"
assert_error_code 1 "CHECK with cniVersion 0.3.1"
assert_json "${CNI_OUT:-null}" "d and d.get('cniVersion') == '0.3.1'" "... answered in cniVersion 0.3.1"

# --- results in old formats
cni ADD ctr-031 "$NS_c1" eth0 "$C031"
assert_rc 0 "ADD with cniVersion 0.3.1"
assert_json "${CNI_OUT:-null}" "d['cniVersion'] == '0.3.1' and d['ips'][0]['version'] == '4' and d['ips'][0]['address'].startswith('10.95.0.')" \
    "0.3.1 result has ips[0].version \"4\""
assert_json "${CNI_OUT:-null}" "d['ips'][0]['interface'] == 2 and len(d['interfaces']) == 3" "0.3.1 result has interfaces and ips[0].interface"
C020=$(CNI_VERSION_CONF=0.2.0 bridge_conf protonet cni-prot0 10.95.0.0/24 '"isGateway":true')
cni ADD ctr-020 "$NS_c2" eth0 "$C020"
assert_rc 0 "ADD with cniVersion 0.2.0"
assert_json "${CNI_OUT:-null}" "d['cniVersion'] == '0.2.0' and d['ip4']['ip'].startswith('10.95.0.') and d['ip4']['gateway'] == '10.95.0.1'" \
    "0.2.0 result has ip4 with ip and gateway"
assert_json "${CNI_OUT:-null}" "'ips' not in d and 'interfaces' not in d" "0.2.0 result has no ips/interfaces"
check "the 0.2.0 container got the address from ip4" test "$(addrs "$NS_c2" eth0)" = "$(jget "$CNI_OUT" "d['ip4']['ip']")"
cni DEL ctr-031 "$NS_c1" eth0 "$C031"
assert_rc 0 "DEL with cniVersion 0.3.1"
cni DEL ctr-020 "$NS_c2" eth0 "$C020"
assert_rc 0 "DEL with cniVersion 0.2.0"

# --- STATUS
C110=$(CNI_VERSION_CONF=1.1.0 bridge_conf protonet cni-prot0 10.95.0.0/24 '"isGateway":true')
plugin_raw bridge "$C110" CNI_COMMAND=STATUS CNI_PATH=$IPCNI_BIN
assert_rc 0 "bridge STATUS on 1.1.0"
assert_empty "$CNI_OUT" "STATUS prints nothing when ready"
plugin_raw bridge "$BR_CONF" CNI_COMMAND=STATUS CNI_PATH=$IPCNI_BIN
assert_error_code 1 "STATUS with cniVersion 1.0.0"

# --- GC (host-local)
GC_STORE="$T_TMP/data/gcnet"
HL=$(printf '{"cniVersion":"1.1.0","name":"gcnet","type":"host-local","ipam":{"type":"host-local","dataDir":"%s","subnet":"10.96.0.0/24"}}' "$T_TMP/data")
cni ADD gc-1 "$NS_c1" eth0 "$HL"
assert_rc 0 "host-local ADD gc-1"
G1=$(result_addr "$CNI_OUT")
cni ADD gc-2 "$NS_c2" eth0 "$HL"
assert_rc 0 "host-local ADD gc-2"
G2=$(result_addr "$CNI_OUT")
cni ADD gc-3 "$NS_c3" net1 "$HL"
assert_rc 0 "host-local ADD gc-3 (net1)"
G3=$(result_addr "$CNI_OUT")
assert_eq "$(reservations "$GC_STORE" | grep -c .)" 3 "three reservations"

plugin_raw host-local "$HL" CNI_COMMAND=GC CNI_PATH=$IPCNI_BIN
assert_rc 0 "GC without cni.dev/valid-attachments"
assert_eq "$(reservations "$GC_STORE" | grep -c .)" 3 "... keeps every reservation"

plugin_raw host-local "$(with_key "$HL" cni.dev/valid-attachments '[{"containerID":"gc-1","ifname":"eth0"},{"containerID":"gc-3","ifname":"eth0"}]')" \
    CNI_COMMAND=GC CNI_PATH=$IPCNI_BIN
assert_rc 0 "GC with gc-1/eth0 and gc-3/eth0 valid"
check "gc-1's reservation is kept" test -e "$GC_STORE/$G1"
check_not "gc-2's reservation is released" test -e "$GC_STORE/$G2"
check_not "gc-3's net1 reservation is released (only eth0 was valid)" test -e "$GC_STORE/$G3"

plugin_raw host-local "$(with_key "$HL" cni.dev/valid-attachments '[]')" CNI_COMMAND=GC CNI_PATH=$IPCNI_BIN
assert_rc 0 "GC with cni.dev/valid-attachments=[]"
assert_empty "$(reservations "$GC_STORE")" "... releases every reservation of the network"
assert_empty "$(store_extras "$GC_STORE")" "... leaving only lock and last_reserved_ip.*"

plugin_raw host-local "$(with_key "$(with_key "$HL" cniVersion '"1.0.0"')" cni.dev/valid-attachments '[]')" CNI_COMMAND=GC CNI_PATH=$IPCNI_BIN
assert_error_code 1 "GC with cniVersion 1.0.0"

finish
