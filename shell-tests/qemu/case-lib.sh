# Shared helpers of the VM cases (shell-tests/qemu/cases/*.sh). run-vm.sh copies this file
# into the initramfs as /etc/ipcni-case-lib.sh (not into /cases, whose every *.sh is run as
# a case); each case sources it right after its header comment:
#
#   . /etc/ipcni-case-lib.sh
#
# POSIX sh (busybox). Provides:
# - the preamble: set -u; IPCNI and IP must be set (guest-init.sh sets them); T (scratch
#   dir: CASE_TMP, else /tmp); the counters FAILS and CHECKS;
# - assertions, each counting one check and printing "ok: ..." or "NOT OK: ...": ok,
#   not_ok, check, check_not, has, hasnt, eq;
# - with_prev CONFIG RESULT and links_of NETNS;
# - finish: the case's last line; prints "N of M checks failed" and exits 1, or
#   "all M checks passed" and exits 0.
# The assertions write the command's output to $T/out (a case may read it after them).
set -u
: "${IPCNI:?}" "${IP:?}"
T=${CASE_TMP:-/tmp}
FAILS=0
CHECKS=0

ok() {
    CHECKS=$((CHECKS + 1))
    echo "ok: $*"
}
not_ok() {
    CHECKS=$((CHECKS + 1))
    FAILS=$((FAILS + 1))
    echo "NOT OK: $*"
}
# check WHAT CMD...: CMD succeeds; its output is shown when it does not
check() {
    what=$1
    shift
    if "$@" >"$T/out" 2>&1; then
        ok "$what"
    else
        not_ok "$what (exit $?: $*)"
        sed 's/^/    /' "$T/out"
    fi
}
# check_not WHAT CMD...: CMD fails
check_not() {
    what=$1
    shift
    if "$@" >"$T/out" 2>&1; then not_ok "$what (succeeded: $*)"; else ok "$what"; fi
}
# has WHAT PATTERN CMD...: CMD succeeds and its output matches the extended regex PATTERN
has() {
    what=$1 pat=$2
    shift 2
    if "$@" >"$T/out" 2>&1 && grep -Eq -- "$pat" "$T/out"; then
        ok "$what"
    else
        not_ok "$what (wanted /$pat/ from: $*)"
        sed 's/^/    /' "$T/out"
    fi
}
# hasnt WHAT PATTERN CMD...: CMD's output does not match PATTERN
hasnt() {
    what=$1 pat=$2
    shift 2
    "$@" >"$T/out" 2>&1
    if grep -Eq -- "$pat" "$T/out"; then
        not_ok "$what (/$pat/ found in: $*)"
        sed 's/^/    /' "$T/out"
    else
        ok "$what"
    fi
}
# eq WHAT ACTUAL EXPECTED
eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1 (expected '$3', got '$2')"; fi
}

# with_prev CONFIG RESULT: the config with "prevResult" added
with_prev() {
    printf '%s,"prevResult":%s}' "${1%?}" "$2"
}
# links_of NETNS: the names of the namespace's links, sorted, each followed by a space
links_of() { $IP -n "$1" -o link show | sed 's/^[0-9]*: \([^:@]*\).*/\1/' | sort | tr '\n' ' '; }

# finish: the verdict of the case, from FAILS and CHECKS; exits
finish() {
    if [ "$FAILS" -gt 0 ]; then
        echo "$FAILS of $CHECKS checks failed"
        exit 1
    fi
    echo "all $CHECKS checks passed"
    exit 0
}
