#!/bin/bash
# Runs the ipcni kernel tests: every shell-tests/t-*.sh, or those named as arguments
# (t-loopback, t-loopback.sh or a path). Each test is its own bash process.
#
#   sudo bash shell-tests/run.sh [TEST...]
#
# Plugins come from $IPCNI_BIN (a directory made by `ipcni install`); without it the
# repository is built with `cargo build --release` and installed into a temp dir.
#
# Prints PASS name / FAIL name (and the test's output) / SKIP name: reason, then a
# `root-namespace-unchanged` line comparing the root network namespace before and after
# the suite, and finally exactly one line `N passed, N failed, N skipped`. Exits non-zero
# when anything failed.

set -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TEST_TIMEOUT=${IPCNI_TEST_TIMEOUT:-90}

if [[ $(id -u) != 0 ]]; then
    echo "run.sh: the kernel tests need root" >&2
    exit 2
fi
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
if [[ -z $PY ]]; then
    echo "run.sh: python3 is required" >&2
    exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ipcni-run$$.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT

if [[ -z ${IPCNI_BIN:-} ]]; then
    if ! (cd "$ROOT" && cargo build --release --quiet); then
        echo "run.sh: cargo build --release failed" >&2
        exit 2
    fi
    IPCNI_BIN="$WORK/bin"
    if ! "$ROOT/target/release/ipcni" install "$IPCNI_BIN" >/dev/null 2>&1; then
        echo "run.sh: ipcni install $IPCNI_BIN failed" >&2
        exit 2
    fi
fi
IPCNI_BIN=$(cd "$IPCNI_BIN" && pwd) || exit 2
if [[ ! -x $IPCNI_BIN/bridge || ! -x $IPCNI_BIN/host-local || ! -x $IPCNI_BIN/loopback ]]; then
    echo "run.sh: $IPCNI_BIN lacks bridge, host-local or loopback" >&2
    exit 2
fi
export IPCNI_BIN

# ---------------------------------------------------------------- the tests to run

tests=()
if (($# == 0)); then
    for t in "$HERE"/t-*.sh; do
        [[ -e $t ]] && tests+=("$t")
    done
else
    for a in "$@"; do
        if [[ -f $a ]]; then
            tests+=("$a")
        elif [[ -f $HERE/$a ]]; then
            tests+=("$HERE/$a")
        elif [[ -f $HERE/$a.sh ]]; then
            tests+=("$HERE/$a.sh")
        else
            echo "run.sh: no test $a" >&2
            exit 2
        fi
    done
fi

# ---------------------------------------------------------------- root namespace snapshot

# Runs a read-only listing command in the root namespace (the suite's own process
# is in it); a missing tool is recorded as such.
root_readonly() {
    if command -v "$1" >/dev/null 2>&1; then
        "$@" 2>&1
    else
        echo "($1 not installed)"
    fi
}

# Normalizes away what changes without anyone touching the namespace: counters,
# link statistics, address and route lifetimes, iptables-save timestamps.
normalize() {
    "$PY" -c '
import json, re, sys
kind = sys.argv[1]
text = sys.stdin.read()
VOLATILE = {"stats", "stats64", "valid_life_time", "preferred_life_time", "expires", "used",
            "lastuse", "age", "promiscuity_changes", "carrier_changes", "carrier_up_count",
            "carrier_down_count"}
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in VOLATILE}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
if kind == "json":
    try:
        print(json.dumps(strip(json.loads(text)), indent=1, sort_keys=True))
    except ValueError:
        print(text)
elif kind == "ipt":
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        line = re.sub(r"\[\d+:\d+\]", "[0:0]", line)
        line = re.sub(r"-c \d+ \d+ ", "", line)
        print(line)
else:
    text = re.sub(r"counter packets \d+ bytes \d+", "counter", text)
    text = re.sub(r"(quota .*?used )\d+ \w+", r"\1X", text)
    print(text)
' "$1"
}

snapshot() {
    local d=$1
    mkdir -p "$d"
    root_readonly ip -j -d link show | normalize json >"$d/link"
    root_readonly ip -j addr show | normalize json >"$d/addr"
    root_readonly ip -j route show table all | normalize json >"$d/route4"
    root_readonly ip -j -6 route show table all | normalize json >"$d/route6"
    root_readonly ip rule show | normalize text >"$d/rule4"
    root_readonly ip -6 rule show | normalize text >"$d/rule6"
    root_readonly iptables-save | normalize ipt >"$d/iptables"
    root_readonly ip6tables-save | normalize ipt >"$d/ip6tables"
    root_readonly nft list ruleset | normalize text >"$d/nft"
    {
        for s in net/ipv4/ip_forward net/ipv6/conf/all/forwarding net/ipv4/conf/all/forwarding; do
            [[ -r /proc/sys/$s ]] && echo "$s=$(</proc/sys/$s)"
        done
    } >"$d/sysctl"
}

snapshot "$WORK/before"

# ---------------------------------------------------------------- run

passed=0 failed=0 skipped=0
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    out="$WORK/$name.out" err="$WORK/$name.err"
    start=$(date +%s.%N)
    # A test may declare a longer budget of its own (`# ipcni-test-timeout: SECONDS`, the
    # qemu VM's), which it also sees as IPCNI_TEST_TIMEOUT.
    limit=$TEST_TIMEOUT
    own=$(sed -n 's/^# ipcni-test-timeout: \([0-9][0-9]*\)$/\1/p' "$t" | head -n 1)
    [[ -n $own ]] && ((own > limit)) && limit=$own
    IPCNI_TEST_TIMEOUT=$limit timeout -k 10 "$limit" bash "$t" >"$out" 2>"$err"
    rc=$?
    secs=$("$PY" -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$start" "$(date +%s.%N)")
    case $rc in
        0)
            echo "PASS $name"
            passed=$((passed + 1))
            ;;
        77)
            reason=$(grep -v '^[[:space:]]*$' "$out" | tail -n 1)
            echo "SKIP $name: ${reason:-no reason given}"
            skipped=$((skipped + 1))
            ;;
        *)
            why="exit $rc"
            ((rc == 124 || rc == 137)) && why="timed out after ${limit}s"
            echo "FAIL $name"
            echo "    | ($why after ${secs}s)"
            sed 's/^/    | /' "$out"
            if [[ -s $err ]]; then
                echo "    | --- stderr"
                sed 's/^/    | /' "$err"
            fi
            failed=$((failed + 1))
            ;;
    esac
done

snapshot "$WORK/after"
if diffs=$(cd "$WORK" && diff -r -u before after); then
    echo "PASS root-namespace-unchanged"
    passed=$((passed + 1))
else
    echo "FAIL root-namespace-unchanged"
    printf '%s\n' "$diffs" | sed 's/^/    | /'
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
