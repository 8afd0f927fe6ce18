#!/usr/bin/env bash
# podman (4.3, CNI backend) running a busybox container on a bridge network made by ipcni's
# plugins, entirely inside a throwaway "host" network namespace. See containers/README.md.
#
#   sudo containers/podman-e2e.sh [--plugins ipcni|reference|DIR] [--bench N] [--keep]
#
#   --plugins  where podman finds the CNI plugins (cni_plugin_dirs): ipcni (default: $IPCNI_BIN,
#              or a fresh release build installed into the temp dir), reference (/usr/lib/cni,
#              the Go plugins), or a directory. Env: PODMAN_E2E_PLUGINS.
#   --bench N  after the checks, time N rounds of `podman run -d` + `podman rm -f`, each
#              round with these plugins, with the reference ones (/usr/lib/cni) and with
#              --network none, interleaved; prints each time and the medians.
#              Env: PODMAN_E2E_BENCH.
#   --keep     keep the temp dir (podman state, configs, logs) and print its path.
#
# Prints every step and check; exits 0 when all checks pass, 1 when one fails, 2 on a
# usage error, and 77 (the reason on the last line of stdout) when podman cannot be
# installed or run here. Set PODMAN_E2E_INSTALL=0 to never apt-get install what is missing.
#
# The root network namespace is never changed: namespaces, links, addresses, routes,
# firewall rules and sysctls are made only in the two namespaces this script creates, and
# podman runs only inside `ip netns exec` of the host one, whose private mount namespace
# also holds the cgroup mounts crun needs and libcni's cache dir (a bind mount over
# /var/lib/cni). The script compares the root namespace's links, routes and firewall
# before and after.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3 || true); fi

EXAMPLE=${PODMAN_E2E_CONFLIST:-$HERE/examples/podman-ipcni.conflist}
UPLINK_HOST=192.0.2.1 # the host namespace's end of the link to the "outside" namespace
UPLINK_OUT=192.0.2.2  # the outside namespace, which has no route to $SUBNET
HOST_PORT=8080
PAGE="hello from the ipcni e2e container"

say() { printf '== %s\n' "$*"; }
skip() {
    printf '%s\n' "$*"
    exit 77
}

# ------------------------------------------------------------------ checks (both halves)

FAILS=0
CHECKS=0
ok() {
    CHECKS=$((CHECKS + 1))
    printf 'ok: %s\n' "$*"
}
not_ok() {
    CHECKS=$((CHECKS + 1))
    FAILS=$((FAILS + 1))
    printf 'NOT OK: %s\n' "$*"
}
# check DESCRIPTION CMD...: the command succeeds; its output is shown when it does not.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$what"
    else
        not_ok "$what"
        [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/    | /'
    fi
}
# check_empty DESCRIPTION VALUE: VALUE is empty (it is shown when not).
check_empty() {
    if [[ -z $2 ]]; then
        ok "$1"
    else
        not_ok "$1"
        printf '%s\n' "$2" | sed 's/^/    | /'
    fi
}
# check_page DESCRIPTION CMD...: the command prints exactly $PAGE (shown when it does not).
check_page() {
    local what=$1 out
    shift
    out=$("$@" 2>&1)
    if [[ $out == "$PAGE" ]]; then
        ok "$what"
    else
        not_ok "$what"
        printf '%s\n' "${out:-(nothing)}" | sed 's/^/    | /'
    fi
}
# median N...: the median of integers (the lower middle one for an even count).
median() {
    printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ======================================================================== inner half
# Runs as `ip netns exec $HOST_NS bash podman-e2e.sh --inner` with the settings in the
# environment (E2E_*). Everything podman does happens in this process tree.

inner() {
    local W=$E2E_WORK
    # Global, not local: the EXIT trap below uses P after inner() has returned.
    P=(podman --root "$W/podman/root" --runroot "$W/podman/run" --tmpdir "$W/podman/tmp"
        --storage-driver vfs --cgroup-manager cgroupfs --events-backend file --network-backend cni)
    # --rootfs makes the first positional argument a root directory instead of an image.
    RUN=(run --rootfs --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
    ROOTFS=$W/rootfs
    local C=e2e-httpd

    # crun needs a cgroup hierarchy under /sys/fs/cgroup; `ip netns exec` gave this process a
    # fresh /sys without one. These mounts stay in this private mount namespace.
    mount -t tmpfs -o mode=755 e2e-cgroup /sys/fs/cgroup || return 1
    local c
    for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
        mkdir -p "/sys/fs/cgroup/$c" && mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" || return 1
    done
    mkdir -p /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd || return 1
    # libcni keeps its result cache in /var/lib/cni, with no setting to move it.
    mount --bind "$W/cni-cache" /var/lib/cni || return 1
    export CONTAINERS_CONF=$W/containers.conf

    # Whatever happens, no container outlives this process.
    trap '"${P[@]}" rm -a -f -t 0 >/dev/null 2>&1' EXIT

    # Can podman run a container here at all? If not, that is this machine, not the plugins.
    say "preflight: podman run --network none (no CNI)"
    local out
    if ! out=$("${P[@]}" "${RUN[@]}" --rm --network none "$ROOTFS" /bin/true 2>&1); then
        printf '%s\n' "$out" | sed 's/^/    | /'
        echo "podman-e2e: podman cannot run a container here: $(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1)"
        return 77
    fi
    ok "podman runs a container without a network"

    local links_before
    links_before=$(link_names)

    say "podman run -d --name $C --network $NET -p $HOST_PORT:80 --rootfs ROOTFS /bin/httpd -f -p 80 -h /www"
    local t0 t1
    t0=$(now_ms)
    if ! out=$("${P[@]}" "${RUN[@]}" -d --name "$C" --network "$NET" -p "$HOST_PORT:80" "$ROOTFS" /bin/httpd -f -p 80 -h /www 2>&1); then
        not_ok "podman run"
        printf '%s\n' "$out" | sed 's/^/    | /'
        return 1
    fi
    t1=$(now_ms)
    ok "podman run ($((t1 - t0)) ms), container ${out:0:12}"
    local cid=$out

    local ip
    ip=$("${P[@]}" inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$C" 2>&1)
    say "podman inspect: $C has $ip"
    check "the address podman reports is in $SUBNET" "$PY" -c '
import ipaddress, sys
sys.exit(0 if ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2]) else 1)' "$ip" "$SUBNET"

    local sandbox
    sandbox=$("${P[@]}" inspect --format '{{.NetworkSettings.SandboxKey}}' "$C" 2>&1)
    check "podman made the container's netns $sandbox" test -e "$sandbox"
    say "podman exec $C ip addr"
    out=$("${P[@]}" exec "$C" ip addr 2>&1)
    printf '%s\n' "$out" | sed 's/^/    /'
    check "eth0 in the container has $ip/${SUBNET#*/}" grep -Eq "inet ${ip//./\\.}/${SUBNET#*/} .* eth0\$" <<<"$out"
    say "podman exec $C ip route"
    out=$("${P[@]}" exec "$C" ip route 2>&1)
    printf '%s\n' "$out" | sed 's/^/    /'
    check "the default route goes via $GATEWAY" grep -Eq "^default via ${GATEWAY//./\\.} dev eth0" <<<"$out"

    check "the container pings its gateway $GATEWAY" "${P[@]}" exec "$C" ping -c 1 -W 2 "$GATEWAY"
    check "the host namespace pings the container at $ip" ping -n -c 1 -W 2 "$ip"

    say "host side: links and firewall while $C runs"
    ip -br link | sed 's/^/    /'
    local veths
    veths=$(link_names_with_master "$BRIDGE")
    check "one veth is a port of $BRIDGE" test "$(wc -w <<<"$veths")" = 1

    # busybox 1.35's wget crashes (SIGSEGV) when given -T; bound it with timeout instead.
    local -a WGET=(timeout 10 "$W/rootfs/bin/busybox" wget -q -Y off -O -)
    say "port mapping $HOST_PORT -> $ip:80"
    check_page "http://127.0.0.1:$HOST_PORT/ answers from the host namespace" "${WGET[@]}" "http://127.0.0.1:$HOST_PORT/"
    check_page "http://$UPLINK_HOST:$HOST_PORT/ answers from the host namespace" "${WGET[@]}" "http://$UPLINK_HOST:$HOST_PORT/"
    check_page "http://$UPLINK_HOST:$HOST_PORT/ answers from the outside namespace" \
        ip netns exec "$E2E_OUT_NS" "${WGET[@]}" "http://$UPLINK_HOST:$HOST_PORT/"
    check_page "the container reaches its own mapped port through the host (hairpin)" \
        "${P[@]}" exec "$C" timeout 10 wget -q -Y off -O - "http://$UPLINK_HOST:$HOST_PORT/"

    say "masquerade: the outside namespace has no route to $SUBNET"
    ip netns exec "$E2E_OUT_NS" ip route | sed 's/^/    outside: /'
    check "the outside namespace has no route to the container" bash -c '! ip netns exec "$1" ip route get "$2" >/dev/null 2>&1' _ "$E2E_OUT_NS" "$ip"
    check "the container pings $UPLINK_OUT in the outside namespace (masqueraded)" "${P[@]}" exec "$C" ping -c 1 -W 2 "$UPLINK_OUT"
    check_page "the container fetches a page from the outside namespace (masqueraded)" \
        "${P[@]}" exec "$C" timeout 10 wget -q -Y off -O - "http://$UPLINK_OUT:8000/"
    sed 's/^/    outside httpd: /' "$W/outside-httpd.log"
    check "the outside namespace saw the request come from $UPLINK_HOST, not from $ip" \
        bash -c 'grep -q "^$1:" "$3" && ! grep -q "^$2:" "$3"' _ "$UPLINK_HOST" "$ip" "$W/outside-httpd.log"

    say "podman stop $C"
    check "podman stop" "${P[@]}" stop -t 0 "$C"
    leftovers "after stop" "$cid" "$ip" "$links_before"
    check "after stop: the container's netns $sandbox is gone" test ! -e "$sandbox"
    say "podman rm $C"
    check "podman rm" "${P[@]}" rm "$C"
    leftovers "after rm" "$cid" "$ip" "$links_before"

    if ((E2E_BENCH > 0)); then
        bench
    fi
    echo "inner: $((CHECKS - FAILS)) of $CHECKS checks passed"
    ((FAILS == 0))
}

link_names() {
    ip -j link show | "$PY" -c 'import json, sys; print(" ".join(sorted(l["ifname"] for l in json.load(sys.stdin))))'
}
link_names_with_master() {
    ip -j link show | "$PY" -c '
import json, sys
print(" ".join(sorted(l["ifname"] for l in json.load(sys.stdin) if l.get("master") == sys.argv[1])))' "$1"
}

# leftovers WHEN CID IP LINKS_BEFORE: nothing of the container is left in the host namespace.
leftovers() {
    local when=$1 cid=$2 ip=$3 before=$4 now
    now=$(link_names)
    check_empty "$when: no veth is left on $BRIDGE" "$(link_names_with_master "$BRIDGE")"
    check "$when: the host namespace has its links from before, plus $BRIDGE" \
        test "$now" = "$(printf '%s\n' $before "$BRIDGE" | sort -u | xargs)"
    local ipt nft
    ipt=$(iptables-save 2>&1)
    check_empty "$when: no iptables rule names the container id or $ip" \
        "$(grep -E -e "$cid" -e "(^|[^0-9.])${ip//./\\.}([^0-9]|$)" <<<"$ipt")"
    check_empty "$when: no per-container iptables chain (CNI-DN-*, CNI-<hash>) is left" \
        "$(grep -E '^:CNI-(DN-)?[0-9a-f]{16,}' <<<"$ipt")"
    if command -v nft >/dev/null; then
        nft=$(nft list ruleset 2>&1)
        check_empty "$when: no nft rule names the container id or $ip" \
            "$(grep -E -e "$cid" -e "(^|[^0-9.])${ip//./\\.}([^0-9]|$)" <<<"$nft")"
    fi
    check_empty "$when: no host-local reservation is left" "$(reservations "$E2E_WORK/ipam/$NET")"
    check_empty "$when: libcni cached no result for the container" "$(find "$E2E_WORK/cni-cache" -type f -name "*$cid*")"
}

# reservations DIR: the files of a host-local store that are address reservations.
reservations() {
    [[ -d $1 ]] || return 0
    "$PY" -c '
import ipaddress, os, sys
for n in sorted(os.listdir(sys.argv[1])):
    try:
        ipaddress.ip_address(n)
    except ValueError:
        continue
    print(n)' "$1"
}

# bench: N rounds, each one `podman run -d` + `podman rm -f` with the plugins under test,
# the same with the reference plugins (/usr/lib/cni, through a second containers.conf),
# and one with --network none, interleaved so that drift in the machine's load hits all
# three alike.
bench() {
    local n=$E2E_BENCH i t0 t1 mode
    local -a modes=(tested reference none)
    local -A runs=() rms=()
    [[ -x /usr/lib/cni/bridge ]] || modes=(tested none)
    say "bench: $n rounds of podman run -d / rm -f -t 0: tested ($E2E_PLUGINS_DIR), reference (/usr/lib/cni), --network none"
    for ((i = 0; i < n; i++)); do
        for mode in "${modes[@]}"; do
            local -a net=(--network "$NET" -p "$HOST_PORT:80")
            local conf=$W/containers.conf
            [[ $mode == none ]] && net=(--network none)
            [[ $mode == reference ]] && conf=$W/containers-reference.conf
            t0=$(now_ms)
            if ! out=$(CONTAINERS_CONF=$conf "${P[@]}" "${RUN[@]}" -d --name "bench-$mode-$i" "${net[@]}" "$ROOTFS" /bin/httpd -f -p 80 -h /www 2>&1); then
                not_ok "bench: podman run ($mode, round $i)"
                printf '%s\n' "$out" | sed 's/^/    | /'
                return
            fi
            t1=$(now_ms)
            runs[$mode]+=" $((t1 - t0))"
            t0=$(now_ms)
            CONTAINERS_CONF=$conf "${P[@]}" rm -f -t 0 "bench-$mode-$i" >/dev/null 2>&1 || not_ok "bench: podman rm -f ($mode, round $i)"
            t1=$(now_ms)
            rms[$mode]+=" $((t1 - t0))"
        done
    done
    for mode in "${modes[@]}"; do
        echo "bench $mode run_ms:${runs[$mode]}"
        echo "bench $mode rm_ms:${rms[$mode]}"
    done
    for mode in "${modes[@]}"; do
        # shellcheck disable=SC2086 # the lists are space-separated numbers
        printf 'bench %-9s median podman run %4d ms, podman rm -f %4d ms\n' "$mode" "$(median ${runs[$mode]})" "$(median ${rms[$mode]})"
    done
    check_empty "after the bench: no veth is left on $BRIDGE" "$(link_names_with_master "$BRIDGE")"
    check_empty "after the bench: no host-local reservation is left" "$(reservations "$E2E_WORK/ipam/$NET")"
}

if [[ ${1:-} == --inner ]]; then
    inner
    exit $?
fi

# ======================================================================== outer half

PLUGINS=${PODMAN_E2E_PLUGINS:-ipcni}
BENCH=${PODMAN_E2E_BENCH:-0}
KEEP=0
while (($#)); do
    case $1 in
        --plugins) PLUGINS=${2:?--plugins needs a value}; shift 2 ;;
        --bench) BENCH=${2:?--bench needs a count}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$SELF"; exit 0 ;;
        *) echo "podman-e2e.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ $BENCH =~ ^[0-9]+$ ]] || { echo "podman-e2e.sh: --bench wants a number, not $BENCH" >&2; exit 2; }

[[ $(id -u) == 0 ]] || skip "podman-e2e: needs root"
[[ -n $PY ]] || skip "podman-e2e: python3 not found"
for t in ip nsenter iptables-save; do
    command -v "$t" >/dev/null || skip "podman-e2e: $t not found"
done

# podman, its runtime pieces and a static busybox for the rootfs.
# ldd exits 1 on a static binary, which is the answer we want.
static_busybox() { [[ -x /bin/busybox ]] && { ldd /bin/busybox 2>&1 || true; } | grep -q "not a dynamic executable"; }
need_install=()
command -v podman >/dev/null || need_install+=(podman)
static_busybox || need_install+=(busybox-static)
if ((${#need_install[@]})); then
    if [[ ${PODMAN_E2E_INSTALL:-1} == 0 ]] || ! command -v apt-get >/dev/null; then
        skip "podman-e2e: ${need_install[*]} not installed (PODMAN_E2E_INSTALL=0 or no apt-get)"
    fi
    say "installing ${need_install[*]}"
    if ! log=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_install[@]}" 2>&1); then
        printf '%s\n' "$log" | tail -n 5 >&2
        skip "podman-e2e: apt-get install ${need_install[*]} failed: $(printf '%s\n' "$log" | grep -m1 -E '^E:' || echo 'see stderr')"
    fi
fi
command -v podman >/dev/null || skip "podman-e2e: podman not found after installing it"
static_busybox || skip "podman-e2e: /bin/busybox is not the static busybox"
podman_version=$(podman --version 2>&1) || skip "podman-e2e: podman --version fails: $podman_version"
say "$podman_version, $(/bin/busybox | head -n 1)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ipcni-podman.XXXXXX")
HOST_NS="ipcni-pe$$-host"
OUT_NS="ipcni-pe$$-out"
MADE_NS=()
MADE_VARLIBCNI=0
OUT_HTTPD_PID=
cleanup() {
    local ns
    [[ -n $OUT_HTTPD_PID ]] && kill "$OUT_HTTPD_PID" 2>/dev/null
    for ns in "${MADE_NS[@]}"; do
        [[ -e /run/netns/$ns ]] && ip netns del "$ns" 2>/dev/null
    done
    ((MADE_VARLIBCNI)) && rmdir /var/lib/cni 2>/dev/null
    if ((KEEP)); then
        echo "kept $WORK"
    else
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ plugins

case $PLUGINS in
    ipcni)
        if [[ -n ${IPCNI_BIN:-} ]]; then
            PLUGIN_DIR=$(cd "$IPCNI_BIN" && pwd) || exit 2
        else
            say "building ipcni (cargo build --release)"
            (cd "$ROOT" && cargo build --release --quiet) || { echo "cargo build failed" >&2; exit 2; }
            PLUGIN_DIR=$WORK/bin
            "$ROOT/target/release/ipcni" install "$PLUGIN_DIR" >/dev/null || { echo "ipcni install failed" >&2; exit 2; }
        fi
        ;;
    reference) PLUGIN_DIR=/usr/lib/cni ;;
    *) PLUGIN_DIR=$(cd "$PLUGINS" && pwd) || exit 2 ;;
esac
for p in bridge host-local portmap firewall tuning; do
    [[ -x $PLUGIN_DIR/$p ]] || { echo "podman-e2e: $PLUGIN_DIR has no $p plugin" >&2; exit 2; }
done
say "plugins: $PLUGIN_DIR ($PLUGINS)"

# ------------------------------------------------------------------ rootfs, configs

say "rootfs from /bin/busybox in $WORK/rootfs"
R=$WORK/rootfs
mkdir -p "$R"/{bin,etc,proc,sys,dev,tmp,www} "$WORK"/{net.d,ipam,cni-cache,podman}
cp /bin/busybox "$R/bin/busybox"
for applet in $("$R/bin/busybox" --list); do
    [[ $applet == busybox || $applet == */* ]] || ln -s busybox "$R/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$R/etc/group"
printf '%s\n' "$PAGE" >"$R/www/index.html"

# The network is containers/examples/podman-ipcni.conflist, the shape `podman network create`
# writes for a CNI network, with only a host-local dataDir added (the temp dir instead of
# /var/lib/cni/networks). NET, BRIDGE, SUBNET and GATEWAY come from it.
"$PY" - "$EXAMPLE" "$WORK/net.d/conflist" "$WORK/ipam" >"$WORK/net.vars" <<'EOF'
import json, shlex, sys
conf = json.load(open(sys.argv[1]))
bridge = conf["plugins"][0]
assert bridge["type"] == "bridge" and bridge["ipam"]["type"] == "host-local", "first plugin: bridge + host-local"
bridge["ipam"]["dataDir"] = sys.argv[3]
rng = bridge["ipam"]["ranges"][0][0]
with open(sys.argv[2], "w") as f:
    json.dump(conf, f, indent=3)
    f.write("\n")
for k, v in (("NET", conf["name"]), ("BRIDGE", bridge["bridge"]), ("SUBNET", rng["subnet"]), ("GATEWAY", rng["gateway"])):
    print("%s=%s" % (k, shlex.quote(v)))
EOF
[[ -s $WORK/net.vars ]] || { echo "podman-e2e: cannot read $EXAMPLE" >&2; exit 2; }
. "$WORK/net.vars"
mv "$WORK/net.d/conflist" "$WORK/net.d/$NET.conflist"
export NET BRIDGE SUBNET GATEWAY
cat >"$WORK/containers.conf" <<EOF
[network]
network_backend = "cni"
cni_plugin_dirs = ["$PLUGIN_DIR"]
network_config_dir = "$WORK/net.d"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
# The bench's comparison: the same, with the Go reference plugins.
sed "s|^cni_plugin_dirs = .*|cni_plugin_dirs = [\"/usr/lib/cni\"]|" "$WORK/containers.conf" >"$WORK/containers-reference.conf"
say "network config $WORK/net.d/$NET.conflist"
sed 's/^/    /' "$WORK/net.d/$NET.conflist"

# ------------------------------------------------------------------ namespaces

root_state() {
    ip -j link show
    ip -j addr show
    ip -j route show table all
    ip -j -6 route show table all
    iptables-save 2>&1 | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'
    command -v ip6tables-save >/dev/null && ip6tables-save 2>&1 | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'
    command -v nft >/dev/null && nft list ruleset 2>&1 | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'
    cat /proc/sys/net/ipv4/ip_forward
}
root_before=$(root_state)
netns_before=$(ls /run/netns 2>/dev/null)

mkns() {
    ip netns add "$1" || { echo "ip netns add $1 failed" >&2; exit 1; }
    MADE_NS+=("$1")
    ip -n "$1" link set lo up
}
say "namespaces: host $HOST_NS, outside $OUT_NS (veth $UPLINK_HOST <-> $UPLINK_OUT)"
mkns "$HOST_NS"
mkns "$OUT_NS"
ip -n "$HOST_NS" link add uplink type veth peer name uplink netns "$OUT_NS" || exit 1
ip -n "$HOST_NS" addr add "$UPLINK_HOST/24" dev uplink || exit 1
ip -n "$HOST_NS" link set uplink up || exit 1
ip -n "$OUT_NS" addr add "$UPLINK_OUT/24" dev uplink || exit 1
ip -n "$OUT_NS" link set uplink up || exit 1
# A page in the outside namespace for the masquerade check.
mkdir -p "$WORK/outside-www" && printf '%s\n' "$PAGE" >"$WORK/outside-www/index.html"
# -v logs each client's address: the masquerade check reads it.
ip netns exec "$OUT_NS" /bin/busybox httpd -f -v -p "$UPLINK_OUT:8000" -h "$WORK/outside-www" 2>"$WORK/outside-httpd.log" &
OUT_HTTPD_PID=$!

if [[ ! -d /var/lib/cni ]]; then
    # The mount point for the private bind mount of libcni's cache dir; removed at exit.
    mkdir /var/lib/cni && MADE_VARLIBCNI=1
fi

say "running podman inside ip netns exec $HOST_NS"
E2E_WORK=$WORK E2E_OUT_NS=$OUT_NS E2E_BENCH=$BENCH E2E_PLUGINS_DIR=$PLUGIN_DIR PY=$PY \
    ip netns exec "$HOST_NS" bash "$SELF" --inner | tee "$WORK/inner.log"
inner_rc=${PIPESTATUS[0]}

say "root network namespace"
root_after=$(root_state)
if [[ $root_before == "$root_after" ]]; then
    ok "the root network namespace is unchanged (links, addresses, routes, iptables, nft, ip_forward)"
else
    not_ok "the root network namespace changed"
    diff <(printf '%s\n' "$root_before") <(printf '%s\n' "$root_after") | sed 's/^/    | /'
fi
check_empty "no podman netns (/run/netns/netns-*) is left" \
    "$(comm -13 <(printf '%s\n' "$netns_before" | grep '^netns-' | sort) <(ls /run/netns 2>/dev/null | grep '^netns-' | sort))"

if ((inner_rc == 77)); then
    # The reason is the inner half's last line; repeat it as ours.
    skip "$(grep -v '^[[:space:]]*$' "$WORK/inner.log" | tail -n 1)"
fi
if ((inner_rc != 0)); then
    not_ok "the checks inside the host namespace (exit $inner_rc)"
fi
if ((FAILS)); then
    echo "podman-e2e: FAILED ($FAILS failed outside, inner exit $inner_rc)"
    exit 1
fi
echo "podman-e2e: all checks passed (plugins: $PLUGINS)"
exit 0
