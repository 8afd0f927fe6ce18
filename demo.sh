#!/usr/bin/env bash
# The demo: builds ipcni, then inside throwaway network namespaces attaches two
# "containers" to a bridge network from the embedded config below, prints the plan
# (--dry-run) and the results, shows them pinging each other and the gateway, and tears
# everything down. Nothing is changed in the root network namespace. Run as root.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh demo
cargo build --release --quiet

tag="ipcni-demo-$$"
host="$tag-host" a="$tag-a" b="$tag-b"
work=$(mktemp -d "/tmp/$tag.XXXXXX")
cleanup() {
    for ns in "$a" "$b" "$host"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
./target/release/ipcni install "$work/bin" 2>/dev/null
for ns in "$host" "$a" "$b"; do ip netns add "$ns"; done

# The embedded default config: a bridge with a gateway, host-local addresses, masquerade.
config=$(cat <<JSON
{
  "cniVersion": "1.1.0",
  "name": "demo",
  "type": "bridge",
  "bridge": "cni0",
  "isGateway": true,
  "ipMasq": true,
  "ipam": {
    "type": "host-local",
    "ranges": [[{"subnet": "10.88.0.0/24"}]],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dataDir": "$work/ipam"
  }
}
JSON
)

# Runs a plugin the way a runtime does, from inside the throwaway "host" namespace.
cni() { # COMMAND CONTAINER_NS [ARGS...]
    local cmd=$1 ns=$2
    shift 2
    ip netns exec "$host" env CNI_COMMAND="$cmd" CNI_CONTAINERID="$ns" CNI_NETNS="/run/netns/$ns" \
        CNI_IFNAME=eth0 CNI_PATH="$work/bin" IPCNI_LOCK_DIR="$work/locks" "$work/bin/bridge" "$@" <<<"$config"
}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "config"
echo "$config"
say "plan for container A (--dry-run: nothing is changed)"
cni ADD "$a" --dry-run
say "ADD container A"
cni ADD "$a"
say "ADD container B"
result_b=$(cni ADD "$b")
echo "$result_b"
ip_b=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])' <<<"$result_b")
say "A pings B ($ip_b) and the gateway (10.88.0.1)"
ip netns exec "$a" ping -c 2 -W 1 "$ip_b"
ip netns exec "$a" ping -c 1 -W 1 10.88.0.1
say "host side: bridge, ports and the masquerade rules"
ip -n "$host" -br link
ip netns exec "$host" iptables -t nat -S POSTROUTING
say "DEL both, then DEL A again (DEL is idempotent)"
cni DEL "$a" && cni DEL "$b" && cni DEL "$a" && echo "DEL: ok"
say "left behind: links on the host, reservations"
ip -n "$host" -br link
ls "$work/ipam/demo"
