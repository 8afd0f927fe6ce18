#!/bin/bash
# golden-capture-portmap-firewall.sh STATE > /tmp/gold/STATE.json (as root)
# Builds a state (ipcni's or the reference's rules, /usr/lib/cni) in throwaway
# namespaces and prints the outputs of the queries portmap and firewall make, for
# scripts/golden-gen-portmap-firewall.py (which reads /tmp/gold/*.json). TAMPER=CMD runs a
# command in the host namespace before the capture.
set -u
BIN=${IPCNI_BIN:-/tmp/pm-bin}
mkdir -p /tmp/gold
NS=gold-cap-$$
ip netns add $NS; ip -n $NS link set lo up
C=gold-ctr-$$; ip netns add $C
trap 'ip netns del $C; ip netns del $NS; rm -rf /tmp/gold/data-$$' EXIT
run() { # plugin cmd id conf
  printf '%s' "$4" | ip netns exec $NS env -i PATH=$PATH IPCNI_LOCK_DIR=/tmp/gold CNI_COMMAND=$2 CNI_CONTAINERID=$3 CNI_NETNS=/run/netns/$C CNI_IFNAME=eth0 CNI_PATH=$5 $5/$1
}
BR='{"cniVersion":"1.0.0","name":"podnet","type":"bridge","bridge":"cni0","isGateway":true,"hairpinMode":true,"ipam":{"type":"host-local","dataDir":"/tmp/gold/data-'$$'","ranges":[[{"subnet":"10.88.0.0/24"}],[{"subnet":"fd88::/64"}]],"routes":[{"dst":"0.0.0.0/0"}]}}'
R=$(run bridge ADD ctr1 "$BR" $BIN)
withprev() { python3 -c 'import json,sys; c=json.loads(sys.argv[1]); c["prevResult"]=json.loads(sys.argv[2]); print(json.dumps(c))' "$1" "$2"; }
MAPS='[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},{"hostPort":8081,"containerPort":80,"protocol":"tcp","hostIP":"192.168.1.10"},{"hostPort":5353,"containerPort":53,"protocol":"udp"}]'
pm() { echo '{"cniVersion":"1.0.0","name":"podnet","type":"portmap","backend":"'$1'","runtimeConfig":{"portMappings":'"$MAPS"'}}'; }
fw() { echo '{"cniVersion":"1.0.0","name":"podnet","type":"firewall","backend":"'$1'"'"${2:-}"'}'; }
case $1 in
  empty) ;;
  pm-ipt) run portmap ADD ctr1 "$(withprev "$(pm iptables)" "$R")" $BIN >/dev/null ;;
  pm-nft) run portmap ADD ctr1 "$(withprev "$(pm nftables)" "$R")" $BIN >/dev/null ;;
  pm-ipt-ref) run portmap ADD ctr1 "$(withprev '{"cniVersion":"1.0.0","name":"podnet","type":"portmap","runtimeConfig":{"portMappings":'"$MAPS"'}}' "$R")" /usr/lib/cni >/dev/null ;;
  fw-ipt) run firewall ADD ctr1 "$(withprev "$(fw iptables)" "$R")" $BIN >/dev/null ;;
  fw-ipt-iso) run firewall ADD ctr1 "$(withprev "$(fw iptables ',"ingressPolicy":"same-bridge"')" "$R")" $BIN >/dev/null ;;
  fw-nft) run firewall ADD ctr1 "$(withprev "$(fw nftables)" "$R")" $BIN >/dev/null ;;
  fw-ipt-ref) run firewall ADD ctr1 "$(withprev '{"cniVersion":"1.0.0","name":"podnet","type":"firewall","backend":"iptables"}' "$R")" /usr/lib/cni >/dev/null ;;
esac
[[ -n ${TAMPER:-} ]] && ip netns exec $NS bash -c "$TAMPER"
python3 - "$NS" "$R" <<'PY'
import json, subprocess, sys
ns, res = sys.argv[1], sys.argv[2]
qs = ["iptables -w -t nat -S", "ip6tables -w -t nat -S", "iptables -w -t filter -S", "ip6tables -w -t filter -S",
      "iptables -w -t filter -S INPUT", "nft list tables",
      "nft -j list table ip cni_hostport", "nft -j list table ip6 cni_hostport", "nft -j list table inet cni_firewall",
      "ip -j route get 10.88.0.2"]
out = {}
for q in qs:
    p = subprocess.run(["ip", "netns", "exec", ns] + q.split(), capture_output=True, text=True)
    if p.returncode != 0:
        out[q] = None
        continue
    try:
        out[q] = json.loads(p.stdout) if q.startswith(("nft -j", "ip -j")) else p.stdout
    except Exception:
        out[q] = p.stdout
json.dump({"observed": out, "result": json.loads(res)}, sys.stdout, indent=2)
PY
