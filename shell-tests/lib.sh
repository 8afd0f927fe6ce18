# shellcheck shell=bash
# Shared helpers for the ipcni kernel tests. Source it from a t-*.sh file:
#
#   . "$(dirname "$0")/lib.sh"
#   setup_host            # creates the throwaway "host" namespace $HOST
#   mk_ns c1              # creates a container namespace, prints nothing, sets NS_c1
#   cni ADD id1 "$NS_c1" eth0 "$CONF"   # sets CNI_RC, CNI_OUT, CNI_ERR
#   assert_rc 0 "ADD succeeds"
#   finish                # exit 0 / 1 from the assertions made
#
# House rules kept here:
# - nothing runs in the root network namespace except reads; every `ip`, `iptables`,
#   `nft` and plugin run goes through `ip netns exec NAME` (in_host, in_ns) or `ip -n NAME`;
# - every name is unique to this process ($T_PREFIX) and removed by exact name in an
#   EXIT trap, which runs whether the test passes, fails or is interrupted;
# - host-local data and the ipcni lock dir live in a mktemp dir ($T_TMP).
#
# A test that cannot run calls `skip REASON` (prints REASON as its last line, exits 77).

set -o pipefail

T_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T_ROOT=$(cd "$T_DIR/.." && pwd)
T_NAME=$(basename "$0" .sh)
T_PREFIX="ipcni-t$$-"
T_FAILS=0
T_CHECKS=0
T_NETNS=()     # namespaces this test created (exact names)
T_PIDS=()      # background processes this test started

if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi

log() { printf '# %s\n' "$*"; }

# ---------------------------------------------------------------- preconditions

skip() {
    # The reason must be the last line on stdout; cleanup is silent.
    printf '%s\n' "$*"
    exit 77
}

[[ $(id -u) == 0 ]] || skip "needs root"
[[ -n $PY ]] || skip "python3 not found"
command -v ip >/dev/null || skip "iproute2 (ip) not found"
command -v nsenter >/dev/null || skip "nsenter not found"

# ---------------------------------------------------------------- cleanup registry

T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ipcni-t$$.XXXXXX")
export IPCNI_LOCK_DIR="$T_TMP/locks"
mkdir -p "$IPCNI_LOCK_DIR"

t_cleanup() {
    local pid ns i
    for pid in "${T_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    # Containers first, then the host: deleting the host namespace removes the bridge,
    # the host veth ends and the firewall rules the plugins made in it.
    for ((i = ${#T_NETNS[@]} - 1; i >= 0; i--)); do
        ns=${T_NETNS[i]}
        [[ -e /run/netns/$ns ]] && ip netns del "$ns" 2>/dev/null
    done
    [[ -n $T_TMP && -d $T_TMP ]] && rm -rf -- "$T_TMP"
}
trap t_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- plugin binaries

# The directory holding ipcni and its plugin symlinks: $IPCNI_BIN, or a fresh build
# installed into this test's temp dir (for running a test file by itself).
ensure_bin() {
    if [[ -n ${IPCNI_BIN:-} ]]; then
        [[ -x $IPCNI_BIN/bridge ]] || { echo "IPCNI_BIN=$IPCNI_BIN has no bridge plugin" >&2; exit 2; }
        return
    fi
    (cd "$T_ROOT" && cargo build --release --quiet) >&2 || { echo "cargo build failed" >&2; exit 2; }
    IPCNI_BIN="$T_TMP/bin"
    "$T_ROOT/target/release/ipcni" install "$IPCNI_BIN" 2>/dev/null || { echo "ipcni install failed" >&2; exit 2; }
}
ensure_bin
export IPCNI_BIN

# ---------------------------------------------------------------- namespaces

# mk_ns SHORT: creates namespace ${T_PREFIX}SHORT, registers it for cleanup and sets
# NS_SHORT to its name (SHORT: letters, digits, underscore).
mk_ns() {
    local name="${T_PREFIX}$1"
    ip netns add "$name" || { echo "ip netns add $name failed" >&2; exit 1; }
    T_NETNS+=("$name")
    printf -v "NS_$1" '%s' "$name"
}

# setup_host: the throwaway "host" namespace every plugin runs in ($HOST), lo up.
setup_host() {
    mk_ns host
    HOST=$NS_host
    ip -n "$HOST" link set lo up
}

# del_ns NAME: deletes a namespace this test made (exact name), before cleanup would.
del_ns() {
    ip netns del "$1"
}

# in_host CMD...: runs CMD in the host namespace.
in_host() { ip netns exec "$HOST" "$@"; }
# in_ns NAME CMD...: runs CMD in namespace NAME.
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---------------------------------------------------------------- JSON

# jget JSON EXPR: evaluates the python expression EXPR with d = parsed JSON; prints
# strings raw, None as "null", everything else as JSON. Fails on bad JSON or a bad EXPR.
jget() {
    "$PY" -c '
import json, sys
d = json.loads(sys.argv[1])
v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v))
' "$1" "$2" 2>/dev/null
}

# jtrue JSON EXPR: succeeds when the python expression is truthy.
jtrue() {
    "$PY" -c '
import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if eval(sys.argv[2]) else 1)
' "$1" "$2" 2>/dev/null
}

# ---------------------------------------------------------------- running plugins

# cni CMD ID NETNS IFNAME CONFIG [ARGS...]
# Runs the plugin named by CONFIG's "type" (or $CNI_PLUGIN) from $CNI_BINDIR (default
# $IPCNI_BIN) inside $HOST, with a clean environment. NETNS is a namespace name (made
# by this test), a path (contains "/"), or "" for an empty CNI_NETNS. CNI_ARGS is passed
# on when set in the caller. Sets CNI_RC, CNI_OUT (stdout), CNI_ERR (stderr).
T_CALLS=0
cni() {
    local cmd=$1 id=$2 netns=$3 ifname=$4 conf=$5
    shift 5
    local bindir=${CNI_BINDIR:-$IPCNI_BIN} plugin=${CNI_PLUGIN:-}
    if [[ -z $plugin ]]; then
        plugin=$(jget "$conf" 'd["type"]') || plugin=bridge
    fi
    local nspath
    case $netns in
        "") nspath="" ;;
        */*) nspath=$netns ;;
        *) nspath=/run/netns/$netns ;;
    esac
    T_CALLS=$((T_CALLS + 1))
    local o="$T_TMP/call.$BASHPID.$T_CALLS.out" e="$T_TMP/call.$BASHPID.$T_CALLS.err"
    # Stdin from a file, not a pipe: a plugin that exits without reading it must not
    # turn into printf's SIGPIPE (exit 141) under pipefail.
    local i="$T_TMP/call.$BASHPID.$T_CALLS.in"
    printf '%s' "$conf" >"$i"
    ip netns exec "$HOST" env -i PATH="$PATH" IPCNI_LOCK_DIR="$IPCNI_LOCK_DIR" \
        CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" CNI_NETNS="$nspath" CNI_IFNAME="$ifname" \
        CNI_PATH="$bindir" CNI_ARGS="${CNI_ARGS:-}" "$bindir/$plugin" "$@" <"$i" >"$o" 2>"$e"
    CNI_RC=$?
    CNI_OUT=$(<"$o")
    CNI_ERR=$(<"$e")
    rm -f "$i" "$o" "$e"
    log "$plugin $cmd id=$id netns=${nspath:-<empty>} if=$ifname $* -> exit $CNI_RC"
    if [[ $CNI_RC != 0 ]]; then
        [[ -n $CNI_OUT ]] && log "  stdout: $CNI_OUT"
    fi
    [[ -n $CNI_ERR ]] && log "  stderr: ${CNI_ERR//$'\n'/ | }"
    return 0
}

# plugin_raw PLUGIN STDIN [VAR=VALUE...]: runs a plugin in $HOST with exactly these
# environment variables (plus PATH and IPCNI_LOCK_DIR). Sets CNI_RC, CNI_OUT, CNI_ERR.
plugin_raw() {
    local plugin=$1 input=$2
    shift 2
    T_CALLS=$((T_CALLS + 1))
    local o="$T_TMP/call.$BASHPID.$T_CALLS.out" e="$T_TMP/call.$BASHPID.$T_CALLS.err"
    local i="$T_TMP/call.$BASHPID.$T_CALLS.in"
    printf '%s' "$input" >"$i"
    ip netns exec "$HOST" env -i PATH="$PATH" IPCNI_LOCK_DIR="$IPCNI_LOCK_DIR" \
        "$@" "$IPCNI_BIN/$plugin" <"$i" >"$o" 2>"$e"
    CNI_RC=$?
    CNI_OUT=$(<"$o")
    CNI_ERR=$(<"$e")
    rm -f "$i" "$o" "$e"
    log "$plugin [$*] -> exit $CNI_RC"
    [[ -n $CNI_OUT ]] && log "  stdout: ${CNI_OUT//$'\n'/ }"
    [[ -n $CNI_ERR ]] && log "  stderr: ${CNI_ERR//$'\n'/ | }"
    return 0
}

# with_prev CONFIG RESULT: CONFIG with "prevResult": RESULT added.
with_prev() {
    "$PY" -c '
import json, sys
c = json.loads(sys.argv[1]); c["prevResult"] = json.loads(sys.argv[2]); print(json.dumps(c))
' "$1" "$2"
}

# with_key CONFIG KEY JSONVALUE: CONFIG with a top-level key set.
with_key() {
    "$PY" -c '
import json, sys
c = json.loads(sys.argv[1]); c[sys.argv[2]] = json.loads(sys.argv[3]); print(json.dumps(c))
' "$1" "$2" "$3"
}

# ---------------------------------------------------------------- observation

# links NS: interface names in NS, one per line, sorted.
links() {
    ip -n "$1" -j link show | "$PY" -c '
import json, sys
for n in sorted(l["ifname"] for l in json.load(sys.stdin)): print(n)'
}

# links_of_kind NS KIND: interface names of that kind (veth, bridge, ...).
links_of_kind() {
    ip -n "$1" -j -d link show | "$PY" -c '
import json, sys
for l in json.load(sys.stdin):
    if l.get("linkinfo", {}).get("info_kind") == sys.argv[1]: print(l["ifname"])' "$2"
}

# addrs NS DEV: "addr/prefix" of DEV (global scope), one per line.
addrs() {
    ip -n "$1" -j addr show dev "$2" 2>/dev/null | "$PY" -c '
import json, sys
for l in json.load(sys.stdin):
    for a in l.get("addr_info", []):
        if a.get("scope") != "link": print("%s/%s" % (a["local"], a["prefixlen"]))'
}

# link_json NS DEV: `ip -j -d link show DEV` object (or nothing).
link_json() {
    ip -n "$1" -j -d link show dev "$2" 2>/dev/null | "$PY" -c '
import json, sys
l = json.load(sys.stdin)
if l: print(json.dumps(l[0]))'
}

# reservations DIR: the reservation files in a host-local store dir (names that parse
# as an IP address), one per line. Nothing when DIR does not exist.
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

# store_extras DIR: files in DIR that are neither "lock" nor "last_reserved_ip.*".
store_extras() {
    [[ -d $1 ]] || return 0
    local f
    for f in "$1"/* "$1"/.[!.]*; do
        [[ -e $f ]] || continue
        f=${f##*/}
        [[ $f == lock || $f == last_reserved_ip.* ]] && continue
        printf '%s\n' "$f"
    done
}

# pings FROM_NS ADDR: one ICMP echo answered within 2 s.
pings() {
    ip netns exec "$1" ping -n -q -c 1 -W 2 "$2" >/dev/null 2>&1
}

# pings_within FROM_NS ADDR SECONDS: an echo answered before the deadline, sending one
# a second (for a freshly added IPv6 address still in duplicate address detection).
pings_within() {
    ip netns exec "$1" ping -n -q -c 1 -i 0.5 -w "$3" "$2" >/dev/null 2>&1
}

# ---------------------------------------------------------------- assertions

ok() { T_CHECKS=$((T_CHECKS + 1)); printf 'ok: %s\n' "$*"; }
not_ok() { T_CHECKS=$((T_CHECKS + 1)); T_FAILS=$((T_FAILS + 1)); printf 'NOT OK: %s\n' "$*"; }

# check DESCRIPTION CMD...: the command succeeds.
check() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$what"; else not_ok "$what"; fi
}

# check_not DESCRIPTION CMD...: the command fails.
check_not() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then not_ok "$what"; else ok "$what"; fi
}

# assert_eq ACTUAL EXPECTED DESCRIPTION
assert_eq() {
    if [[ $1 == "$2" ]]; then
        ok "$3"
    else
        not_ok "$3"
        printf '    expected: %q\n    actual:   %q\n' "$2" "$1"
    fi
}

assert_ne() {
    if [[ $1 != "$2" ]]; then ok "$3"; else not_ok "$3 (both are $(printf %q "$1"))"; fi
}

# assert_rc EXPECTED DESCRIPTION: the last cni call's exit code ("nonzero" accepted).
assert_rc() {
    if [[ $1 == nonzero ]]; then
        if [[ $CNI_RC != 0 ]]; then ok "$2 (exit $CNI_RC)"; else not_ok "$2 (exit 0, expected non-zero)"; fi
    elif [[ $CNI_RC == "$1" ]]; then
        ok "$2"
    else
        not_ok "$2 (exit $CNI_RC, expected $1)"
        [[ -n $CNI_OUT ]] && printf '    stdout: %s\n' "$CNI_OUT"
    fi
}

# assert_json JSON EXPR DESCRIPTION: the python expression over d is truthy.
assert_json() {
    if jtrue "$1" "$2"; then
        ok "$3"
    else
        not_ok "$3"
        printf '    expression: %s\n    json: %s\n' "$2" "$(printf '%s' "$1" | head -c 2000)"
    fi
}

# assert_error_code CODE DESCRIPTION: the last call failed with a CNI error JSON on
# stdout carrying CODE and a non-empty msg.
assert_error_code() {
    if [[ $CNI_RC == 0 ]]; then
        not_ok "$2 (exit 0, expected an error with code $1)"
        return
    fi
    assert_json "$CNI_OUT" "d.get('code') == $1 and isinstance(d.get('msg'), str) and d['msg'] != ''" "$2 (code $1)"
}

# assert_empty VALUE DESCRIPTION
assert_empty() {
    if [[ -z $1 ]]; then ok "$2"; else not_ok "$2"; printf '    got: %s\n' "${1//$'\n'/ }"; fi
}

# finish: exit status from the assertions. A test with no assertion fails.
finish() {
    if ((T_CHECKS == 0)); then
        echo "NOT OK: the test made no assertion"
        exit 1
    fi
    if ((T_FAILS > 0)); then
        echo "$T_FAILS of $T_CHECKS checks failed"
        exit 1
    fi
    echo "all $T_CHECKS checks passed"
    exit 0
}

# ---------------------------------------------------------------- configs

# bridge_conf NAME BRIDGE SUBNET [EXTRA_JSON_FIELDS]: a 1.0.0 bridge + host-local config
# whose store is in $T_TMP/data. EXTRA is spliced in as `, EXTRA` (e.g. '"ipMasq":true').
bridge_conf() {
    local name=$1 br=$2 subnet=$3 extra=${4:-} version=${CNI_VERSION_CONF:-1.0.0}
    printf '{"cniVersion":"%s","name":"%s","type":"bridge","bridge":"%s"%s,"ipam":{"type":"host-local","dataDir":"%s","subnet":"%s"}}' \
        "$version" "$name" "$br" "${extra:+,$extra}" "$T_TMP/data" "$subnet"
}

# store_dir NETWORK: the host-local store dir of a network made by bridge_conf.
store_dir() { printf '%s/data/%s' "$T_TMP" "$1"; }

# result_addr RESULT [N]: the address (without prefix) of ips[N].
result_addr() { jget "$1" "d['ips'][${2:-0}]['address'].split('/')[0]"; }

# iptables_ok / nft_ok: the tool exists and works inside the host namespace.
iptables_ok() {
    command -v iptables >/dev/null && command -v iptables-save >/dev/null && command -v iptables-restore >/dev/null \
        && in_host iptables -t nat -S >/dev/null 2>&1
}
nft_ok() {
    command -v nft >/dev/null && in_host nft list ruleset >/dev/null 2>&1
}
