#!/bin/bash
# The VM kernel cases: boots Debian's stock kernel under qemu (shell-tests/qemu/run-vm.sh)
# and runs every shell-tests/qemu/cases/*.sh inside it, for the link types this machine's
# kernel lacks (ipvlan, vlan, dummy, vrf) and bridge VLAN filtering (bridge-vlan.sh).
# Prints one ok / NOT OK / skip line per case.
#
# Exits 77 with the reason when the VM cannot run (qemu not installable, kernel package not
# downloadable, no boot, out of time) or when every case skipped; 1 when a case failed or
# the static ipcni did not build; 0 when every case passed or skipped and at least one passed.
#
# Does not use lib.sh: nothing here runs on the host but apt-get, cargo, file building and
# qemu (the VM has no network device), and the plugins run are a static build made by
# run-vm.sh, not $IPCNI_BIN.
#
# ipcni-test-timeout: 240
# Time: run.sh kills a test after IPCNI_TEST_TIMEOUT seconds (240 for this one, from the
# line above; 90 for the others). The first run on a
# machine installs qemu, downloads the kernel and builds the static ipcni (~55 s measured);
# run-vm.sh is given a deadline 10 s before run.sh's and skips (77) rather than be killed
# when preparation eats the budget; what it did is cached for the next run. A cached run
# with all six cases took 60-66 s on a busy 2-CPU host (2026-12-04): a ~3.5 s boot, then
# bridge-vlan and vrf ~15-17 s each, vlan and ipvlan 7-13 s, dummy and smoke 4-6 s; a case
# more of that size needs a larger budget above.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
budget=${IPCNI_TEST_TIMEOUT:-240}
if [[ -z ${IPCNI_QEMU_DEADLINE:-} ]] && ((budget > 0)); then
    IPCNI_QEMU_DEADLINE=$(($(date +%s) + budget - 10))
    export IPCNI_QEMU_DEADLINE
fi

out=$(mktemp "${TMPDIR:-/tmp}/ipcni-tqemu.XXXXXX")
trap 'rm -f -- "$out"' EXIT

bash "$HERE/qemu/run-vm.sh" "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}

if ((rc == 77)); then
    reason=$(grep -v '^[[:space:]]*$' "$out" | tail -n 1)
    echo "the VM could not run; no case was run"
    echo "${reason:-run-vm.sh gave no reason}"
    exit 77
fi

echo "----"
pass=0 fails=0 skips=0 first_skip=""
while read -r _ name verdict reason; do
    case $verdict in
        PASS)
            pass=$((pass + 1))
            echo "ok: qemu case $name${reason:+ ($reason)}"
            ;;
        SKIP)
            skips=$((skips + 1))
            [[ -z $first_skip ]] && first_skip="$name: $reason"
            echo "skip: qemu case $name: $reason"
            ;;
        *)
            fails=$((fails + 1))
            echo "NOT OK: qemu case $name: $reason"
            ;;
    esac
done < <(grep -E '^QEMU-CASE [A-Za-z0-9._-]+ (PASS|FAIL|SKIP)' "$out")
total=$((pass + fails + skips))

if ((fails > 0)); then
    echo "$fails of $total qemu cases failed"
    exit 1
fi
if ((rc != 0)); then
    echo "NOT OK: run-vm.sh failed (exit $rc)"
    exit 1
fi
if ((total == 0)); then
    echo "run-vm.sh reported no case"
    exit 77
fi
if ((pass == 0)); then
    echo "all $total qemu cases skipped (first: $first_skip)"
    exit 77
fi
echo "all $total qemu cases passed or skipped ($pass passed, $skips skipped)"
exit 0
