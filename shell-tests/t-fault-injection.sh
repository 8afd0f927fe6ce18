#!/bin/bash
# A failed ADD undoes what it did, against the real kernel: the golden tests' fault
# injection (tests/golden.rs) replayed with the real executor. The plugins come from a
# build with `--features fault-injection`, whose executor fails the step numbered by
# IPCNI_FAIL_AT_STEP (0-based, over the whole invocation) instead of running it.
#
# For each scenario (bridge creating its bridge, with ipMasq over iptables and over
# nftables; bridge joining an existing bridge; ptp with ipMasq; macvlan; tap; vxlan
# creating its device and bridge; host-device) ADD runs with k = 0, 1, 2, … until it
# succeeds. After every failing ADD:
#   - the error JSON has code 100 and names the injected step;
#   - links, addresses, routes, rules, neighbour/fdb entries, iptables and nft rulesets
#     and every sysctl under /proc/sys/net in each namespace involved equal what they
#     were before, and so do the host-local reservations and the plugin state files.
# The number of fault points must equal the step count of the `--dry-run=json` plan.
#
# Not compared, by design: the store's `lock` and `last_reserved_ip.*` (the round-robin
# cursor: the reference moves it on a failed ADD too; it reserves nothing), and the
# host-wide net.ipv4.ip_forward / net.ipv6.conf.all.forwarding when a failed ADD turned
# them on: other containers on the host may already rely on forwarding, so no plugin
# turns it off again. The host namespace starts with forwarding on, as a host running
# containers has, so every other sysctl must come back exactly.
#
# IPCNI_FAULT_BIN: a directory made by `ipcni install` from a fault-injection build;
# without it this test builds one (debug, target/fault-injection) and installs it.
. "$(dirname "$0")/lib.sh"

if [[ -z ${IPCNI_FAULT_BIN:-} ]]; then
    (cd "$T_ROOT" && cargo build --quiet --features fault-injection --target-dir target/fault-injection) >&2 \
        || { echo "cargo build --features fault-injection failed" >&2; exit 2; }
    IPCNI_FAULT_BIN="$T_TMP/fault-bin"
    "$T_ROOT/target/fault-injection/debug/ipcni" install "$IPCNI_FAULT_BIN" >/dev/null 2>&1 \
        || { echo "ipcni install $IPCNI_FAULT_BIN failed" >&2; exit 2; }
fi
IPCNI_BIN=$IPCNI_FAULT_BIN
STATE="$T_TMP/state"
DATA="$T_TMP/data"

# mk_test_ns SHORT: mk_ns, with IPv6 duplicate address detection off for the links made
# later: a link-local address that finishes DAD (and gains its route) between two
# snapshots is the kernel's timer, not something an ADD left behind.
mk_test_ns() {
    mk_ns "$1"
    local ns="NS_$1"
    in_ns "${!ns}" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
}

mk_test_ns host
HOST=$NS_host
ip -n "$HOST" link set lo up
in_host sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
# Load the iptables tables a plugin may touch, so that "nat exists now" is not a diff.
for t in nat filter mangle; do
    in_host iptables -t "$t" -S >/dev/null 2>&1
    in_host ip6tables -t "$t" -S >/dev/null 2>&1
done

# The snapshot of one namespace, normalized: run inside it (ip netns exec).
cat >"$T_TMP/snap.py" <<'EOF'
import json, os, re, subprocess, sys
VOLATILE = {"stats", "stats64", "valid_life_time", "preferred_life_time", "expires", "used",
            "lastuse", "age", "updated", "promiscuity_changes", "carrier_changes",
            "carrier_up_count", "carrier_down_count"}
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in VOLATILE and not k.endswith("_timer")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
def run(*argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else "(%s failed: %s)" % (argv[0], p.stderr.strip())
def js(*argv):
    out = run(*argv)
    try:
        return strip(json.loads(out or "[]"))
    except ValueError:
        return out
def ordered(v):
    # Route, rule and neighbour dumps come in kernel order, which a delete and re-add
    # (a device moved out and back) changes.
    return sorted(v, key=lambda x: json.dumps(x, sort_keys=True)) if isinstance(v, list) else v
snap = {
    "link": js("ip", "-j", "-d", "link", "show"),
    "addr": js("ip", "-j", "addr", "show"),
    "route4": ordered(js("ip", "-j", "-4", "route", "show", "table", "all")),
    "route6": ordered(js("ip", "-j", "-6", "route", "show", "table", "all")),
    "rule4": ordered(js("ip", "-j", "-4", "rule", "show")),
    "rule6": ordered(js("ip", "-j", "-6", "rule", "show")),
    "neigh": ordered(js("ip", "-j", "neigh", "show", "nud", "permanent")),
    # Multicast entries follow the addresses the kernel gives a link; they are not ours.
    "fdb": [e for e in js("bridge", "-j", "fdb", "show")
            if not e.get("mac", "").startswith(("33:33:", "01:00:5e:"))],
    "bridge_vlan": js("bridge", "-j", "vlan", "show"),
}
for tool in ("iptables-save", "ip6tables-save"):
    text = run(tool)
    snap[tool] = [re.sub(r"\[\d+:\d+\]", "[0:0]", l) for l in text.splitlines() if not l.startswith("#")]
nft = run("nft", "list", "ruleset")
snap["nft"] = re.sub(r"counter packets \d+ bytes \d+", "counter", nft).splitlines()
sysctls = {}
for root in ("/proc/sys/net/ipv4", "/proc/sys/net/ipv6"):
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if p.endswith(("/ip_forward", "/all/forwarding")) or "/neigh/" in p or "/route/" in p:
                continue
            try:
                with open(p) as fh:
                    sysctls[p] = fh.read().strip()
            except OSError:
                pass
snap["sysctl"] = sysctls
print(json.dumps(snap, indent=1, sort_keys=True))
EOF

# files DIR: every file under DIR (relative path and contents), except host-local's
# lock and round-robin cursor.
files() {
    [[ -d $1 ]] || return 0
    (cd "$1" && find . -type f ! -name lock ! -name 'last_reserved_ip.*' -print0 | sort -z | while IFS= read -r -d '' f; do
        printf '%s = %q\n' "$f" "$(<"$f")"
    done)
}

# snapshot NS...: the state of these namespaces, the store and the plugin state dir.
snapshot() {
    local ns
    for ns in "$@"; do
        echo "=== netns ${ns#"$T_PREFIX"}"
        in_ns "$ns" "$PY" "$T_TMP/snap.py"
    done
    echo "=== store"
    files "$DATA"
    echo "=== state"
    files "$STATE"
}

# fcni CMD ID NETNS IFNAME CONFIG [VAR=VALUE...]: a plugin run from the fault build.
fcni() {
    local cmd=$1 id=$2 ns=$3 ifname=$4 conf=$5
    shift 5
    local plugin
    plugin=$(jget "$conf" 'd["type"]')
    plugin_raw "$plugin" "$conf" IPCNI_STATE_DIR="$STATE" CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" \
        CNI_NETNS="/run/netns/$ns" CNI_IFNAME="$ifname" CNI_PATH="$IPCNI_BIN" CNI_ARGS="" "$@" >/dev/null
}

# warm_up ID NETNS IFNAME CONFIG: one ADD and DEL, so that what stays after a DEL by
# design (iptables-nft's nat table and its base chains, the shared nft table
# inet cni_plugins_masquerade and its postrouting chain, the store's lock) is there
# before the first snapshot, as on any host that has run a container.
warm_up() {
    fcni ADD "$@"
    assert_rc 0 "warm-up ADD $1"
    fcni DEL "$@"
    assert_rc 0 "warm-up DEL $1"
}

# The container addresses of this test's networks.
ADDR_RE='10\.97\.[0-9]+\.[0-9]+|fd97:1::[0-9a-f]+'
REPORT=()
# fault_points LABEL ID CONTAINER_NS IFNAME CONFIG NS...: fails ADD at each step in turn
# (snapshotting the namespaces NS... before and after each), then lets it succeed and
# DELs it.
fault_points() {
    local label=$1 id=$2 cns=$3 ifname=$4 conf=$5
    shift 5
    local before after k=0 steps
    fcni ADD "$id" "$cns" "$ifname" "$conf" IPCNI_DRY_RUN=json
    steps=$(jget "$CNI_OUT" 'len(d["plan"])')
    log "$label: the dry-run plan has ${steps:-?} steps"
    # Each step's command line as an error message shows it (a wait step has no program),
    # with the container's addresses masked: every failed ADD took the next address.
    local -a cmds
    mapfile -t cmds < <("$PY" -c '
import json, re, shlex, sys
for s in json.loads(sys.argv[1])["plan"]:
    a = s["argv"]
    line = " ".join(a[1:]) if a and a[0] == "" else shlex.join(a)
    print(re.sub(sys.argv[2], "ADDR", line))' "$CNI_OUT" "$ADDR_RE")
    before=$(snapshot "$@")
    while ((k <= 60)); do
        fcni ADD "$id" "$cns" "$ifname" "$conf" IPCNI_FAIL_AT_STEP=$k
        [[ $CNI_RC == 0 ]] && break
        assert_json "$CNI_OUT" "d.get('code') == 100 and 'injected failure (IPCNI_FAIL_AT_STEP=$k)' in d.get('msg', '') and $(printf '%s' "${cmds[k]:-no such step}" | "$PY" -c 'import sys; print(repr(sys.stdin.read()))') in __import__('re').sub(r'$ADDR_RE', 'ADDR', d['msg'])" \
            "$label: ADD failing at step $k names it (code 100): ${cmds[k]:0:60}"
        after=$(snapshot "$@")
        if [[ $after == "$before" ]]; then
            ok "$label: after the failure at step $k the state is as before"
        else
            not_ok "$label: after the failure at step $k the state is as before"
            diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") | head -n 40 | sed 's/^/    /'
            fcni DEL "$id" "$cns" "$ifname" "$conf"   # so that the next step starts clean
        fi
        k=$((k + 1))
    done
    assert_rc 0 "$label: ADD with IPCNI_FAIL_AT_STEP=$k (past the last step) succeeds"
    assert_eq "$k" "$steps" "$label: $k fault points, one per step of the plan"
    REPORT+=("$label: $k fault points")
    fcni DEL "$id" "$cns" "$ifname" "$conf"
    assert_rc 0 "$label: DEL after the successful ADD"
}

# A fault build is required: with it, step 0 of any plan fails.
mk_ns probe
fcni ADD probe "$NS_probe" eth0 "$(bridge_conf probenet cni-probe 10.97.9.0/24)" IPCNI_FAIL_AT_STEP=0
if ! jtrue "${CNI_OUT:-null}" "'injected failure' in d.get('msg', '')"; then
    not_ok "$IPCNI_BIN is a --features fault-injection build (IPCNI_FAIL_AT_STEP=0 made no ADD fail)"
    finish
fi
del_ns "$NS_probe"

# --- bridge: the ADD creates the bridge, masquerades (iptables), is the gateway
mk_test_ns c1
CONF=$(bridge_conf fbnet cni-fb0 10.97.0.0/24 '"isGateway":true,"ipMasq":true,"ipMasqBackend":"iptables","hairpinMode":true')
warm_up ctr-warm "$NS_c1" eth0 "$CONF"
in_host ip link del cni-fb0
fault_points "bridge new+ipMasq(iptables)" ctr-b1 "$NS_c1" eth0 "$CONF" "$HOST" "$NS_c1"
in_host ip link del cni-fb0

# --- bridge: the same with the nftables backend, dual stack
CONF=$(printf '{"cniVersion":"1.0.0","name":"fbnft","type":"bridge","bridge":"cni-fb1","isDefaultGateway":true,"ipMasq":true,"ipMasqBackend":"nftables","ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.97.1.0/24"}],[{"subnet":"fd97:1::/64"}]]}}' "$DATA")
warm_up ctr-warm "$NS_c1" eth0 "$CONF"
in_host ip link del cni-fb1
fault_points "bridge new+ipMasq(nftables)" ctr-b2 "$NS_c1" eth0 "$CONF" "$HOST" "$NS_c1"
in_host ip link del cni-fb1

# --- bridge: joining a bridge that already serves a container
mk_test_ns c0
EXISTING=$(bridge_conf fbnet cni-fb0 10.97.0.0/24 '"isGateway":true,"ipMasq":true,"ipMasqBackend":"iptables"')
fcni ADD ctr-b0 "$NS_c0" eth0 "$EXISTING"
assert_rc 0 "bridge: ADD of the container that makes cni-fb0"
fault_points "bridge existing+ipMasq(iptables)" ctr-b3 "$NS_c1" eth0 "$EXISTING" "$HOST" "$NS_c1" "$NS_c0"
fcni DEL ctr-b0 "$NS_c0" eth0 "$EXISTING"
in_host ip link del cni-fb0

# --- ptp with ipMasq
fault_points "ptp+ipMasq(iptables)" ctr-p1 "$NS_c1" eth0 \
    "$(printf '{"cniVersion":"1.0.0","name":"fpnet","type":"ptp","ipMasq":true,"ipMasqBackend":"iptables","mtu":1400,"ipam":{"type":"host-local","dataDir":"%s","subnet":"10.97.2.0/24","routes":[{"dst":"0.0.0.0/0"}]}}' "$DATA")" \
    "$HOST" "$NS_c1"

# --- macvlan on a veth end (no dummy device here)
in_host ip link add fmv0 type veth peer name fmv1
in_host ip link set fmv0 up
in_host ip link set fmv1 up
fault_points "macvlan" ctr-m1 "$NS_c1" eth0 \
    "$(printf '{"cniVersion":"1.0.0","name":"fmnet","type":"macvlan","master":"fmv0","mode":"bridge","mtu":1400,"ipam":{"type":"host-local","dataDir":"%s","subnet":"10.97.3.0/24"}}' "$DATA")" \
    "$HOST" "$NS_c1"

# --- tap
fault_points "tap" ctr-t1 "$NS_c1" tap0 \
    "$(printf '{"cniVersion":"1.0.0","name":"ftnet","type":"tap","mtu":1400,"mac":"02:97:00:00:00:01","multiQueue":true,"ipam":{"type":"host-local","dataDir":"%s","subnet":"10.97.4.0/24"}}' "$DATA")" \
    "$HOST" "$NS_c1"

# --- vxlan: the ADD creates the VXLAN device and its bridge (underlay: a veth to $NS_n2)
mk_test_ns n2
in_host ip link add name fu1 type veth peer name fu2 netns "$NS_n2"
in_host ip addr add 192.168.97.1/24 dev fu1
in_host ip link set fu1 up
ip -n "$NS_n2" addr add 192.168.97.2/24 dev fu2
ip -n "$NS_n2" link set fu2 up
fault_points "vxlan" ctr-v1 "$NS_c1" eth0 \
    "$(printf '{"cniVersion":"1.0.0","name":"fvnet","type":"vxlan","vni":97,"dev":"fu1","local":"192.168.97.1","remotes":["192.168.97.2"],"ipam":{"type":"host-local","dataDir":"%s","subnet":"10.97.5.0/24"}}' "$DATA")" \
    "$HOST" "$NS_c1"
in_host ip link del vxlan97
in_host ip link del vxbr97

# --- host-device: a veth end with an address moved into the container
in_host ip link add name fhd0 address 02:97:00:00:00:10 type veth peer name fhd0p
in_host ip link set fhd0p up
in_host ip link set fhd0 up
fault_points "host-device" ctr-h1 "$NS_c1" net1 \
    "$(printf '{"cniVersion":"1.0.0","name":"fhnet","type":"host-device","device":"fhd0","ipam":{"type":"host-local","dataDir":"%s","subnet":"10.97.6.0/24"}}' "$DATA")" \
    "$HOST" "$NS_c1"

for line in "${REPORT[@]}"; do log "fault points: $line"; done
finish
