#!/bin/bash
# Concurrency: 100 containers on one bridge network with ipMasq, ADDed in parallel waves
# of 10 while the wave before last is DELed in parallel with them. The range is 40
# addresses, so addresses released by the DELs are handed out again by the ADDs running
# beside them.
#   - 0 errors: every ADD and DEL exits 0;
#   - 0 duplicates: no two containers hold the same address while both are certainly
#     live (from the end of one's ADD to the start of its DEL), checked over the
#     recorded timeline of all 100, and at each wave boundary over what the live
#     containers' eth0 actually carry; the reservations are exactly the live containers;
#   - 0 leftovers at the end: no reservation or stray store file, no host veth, no
#     container link but lo, no masquerade rule or CNI- chain.
. "$(dirname "$0")/lib.sh"

N=${IPCNI_CONCURRENCY_N:-100}
WAVE=10
setup_host
if iptables_ok; then
    BACKEND=iptables
elif nft_ok; then
    BACKEND=nftables
else
    skip "neither iptables nor nft is usable in a namespace"
fi
NET=connet
BR=cni-con0
CONF=$(printf '{"cniVersion":"1.0.0","name":"%s","type":"bridge","bridge":"%s","isGateway":true,"ipMasq":true,"ipMasqBackend":"%s","ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.94.0.0/24","rangeStart":"10.94.0.10","rangeEnd":"10.94.0.49"}]]}}' \
    "$NET" "$BR" "$BACKEND" "$T_TMP/data")
STORE=$(store_dir $NET)
RES="$T_TMP/res"
mkdir -p "$RES"
log "$N containers, waves of $WAVE, ipMasq backend $BACKEND"
for i in $(seq 1 "$N"); do mk_ns "k$i"; done

# op_bg CMD I: one plugin call in the background; RES/I.CMD gets
# "start_us end_us exit_code address" and RES/I.CMD.out the stdout.
op_bg() {
    local ns="NS_k$2"
    (
        local t0=${EPOCHREALTIME/./}
        cni "$1" "con-$2" "${!ns}" eth0 "$CONF" >"$RES/$2.$1.log"
        local t1=${EPOCHREALTIME/./} a=-
        [[ $1 == ADD && $CNI_RC == 0 ]] && a=$(result_addr "$CNI_OUT")
        printf '%s' "$CNI_OUT" >"$RES/$2.$1.out"
        echo "$t0 $t1 $CNI_RC $a" >"$RES/$2.$1"
    ) &
}

# wave_check LIVE...: the live containers' eth0 addresses are distinct, each is its
# ADD result's, and the reservations are exactly theirs.
wave_check() {
    local i ns
    for i in "$@"; do
        ns="NS_k$i"
        printf '%s %s\n' "$i" "$(ip -n "${!ns}" -j addr show dev eth0 2>/dev/null)"
    done >"$T_TMP/live.txt"
    "$PY" - "$RES" "$STORE" "$T_TMP/live.txt" <<'EOF'
import json, os, sys
res, store, live = sys.argv[1:]
errors = []
seen = {}
for line in open(live):
    i, _, text = line.partition(" ")
    try:
        addrs = [a["local"] for l in json.loads(text) for a in l.get("addr_info", []) if a.get("family") == "inet"]
    except ValueError:
        addrs = []
    want = open(os.path.join(res, i + ".ADD")).read().split()[3]
    if addrs != [want]:
        errors.append("con-%s: eth0 has %s, its ADD said %s" % (i, addrs, want))
    for a in addrs:
        if a in seen:
            errors.append("con-%s and con-%s both carry %s" % (seen[a], i, a))
        seen[a] = i
owners = {}
for name in os.listdir(store):
    if name[0].isdigit():
        owners[name] = open(os.path.join(store, name), newline="").read().split("\r\n")[0]
expected = {a: "con-" + i for a, i in seen.items()}
if owners != expected:
    errors.append("reservations %s, live containers %s" % (sorted(owners.items()), sorted(expected.items())))
print("\n".join(errors))
EOF
}

waves=$(((N + WAVE - 1) / WAVE))
live=()
check_fail=0
for ((w = 0; w < waves + 2; w++)); do
    # ADD wave w, DEL wave w-2, all at once.
    for ((i = w * WAVE + 1; i <= (w + 1) * WAVE && i <= N && w < waves; i++)); do op_bg ADD "$i"; done
    if ((w >= 2)); then
        for ((i = (w - 2) * WAVE + 1; i <= (w - 1) * WAVE && i <= N; i++)); do op_bg DEL "$i"; done
    fi
    wait
    live=()
    for ((i = (w - 1) * WAVE + 1; i <= (w + 1) * WAVE && i <= N; i++)); do
        ((i >= 1)) && [[ -e $RES/$i.ADD && ! -e $RES/$i.DEL ]] && live+=("$i")
    done
    problems=$(wave_check "${live[@]}")
    if [[ -n $problems ]]; then
        check_fail=$((check_fail + 1))
        log "after wave $w (${#live[@]} live): ${problems//$'\n'/ | }"
    fi
done
assert_eq "$check_fail" 0 "at every wave boundary the live containers carry distinct addresses, their own, and hold exactly the reservations"

# Errors and the timeline.
SUMMARY=$("$PY" - "$RES" "$N" <<'EOF'
import os, sys
res, n = sys.argv[1], int(sys.argv[2])
errors, spans = [], []
for i in range(1, n + 1):
    ops = {}
    for cmd in ("ADD", "DEL"):
        try:
            t0, t1, rc, addr = open(os.path.join(res, "%d.%s" % (i, cmd))).read().split()
        except (OSError, ValueError):
            errors.append("con-%d: no %s record" % (i, cmd))
            continue
        if rc != "0":
            out = open(os.path.join(res, "%d.%s.out" % (i, cmd))).read()
            errors.append("con-%d: %s exit %s %s" % (i, cmd, rc, out[:200]))
        ops[cmd] = (int(t0), int(t1), addr)
    if "ADD" in ops and "DEL" in ops and ops["ADD"][2] != "-":
        spans.append((ops["ADD"][1], ops["DEL"][0], ops["ADD"][2], i))
dups = []
for a in range(len(spans)):
    for b in range(a + 1, len(spans)):
        s, t = spans[a], spans[b]
        if s[2] == t[2] and s[0] < t[1] and t[0] < s[1]:
            dups.append("con-%d and con-%d both held %s" % (s[3], t[3], s[2]))
reused = len(spans) - len({s[2] for s in spans})
print(len(errors))
print(len(dups))
print(reused)
for e in errors[:10] + dups[:10]:
    print(e)
EOF
)
mapfile -t lines <<<"$SUMMARY"
for l in "${lines[@]:3}"; do log "$l"; done
assert_eq "${lines[0]}" 0 "0 errors among $N ADDs and $N DELs"
assert_eq "${lines[1]}" 0 "0 duplicate addresses among live containers over the timeline"
log "addresses handed out again after a DEL: ${lines[2]}"
check "addresses released by DELs were handed out again during the run" test "${lines[2]:-0}" -gt 0

# Leftovers.
assert_empty "$(reservations "$STORE")" "no reservation left"
assert_empty "$(store_extras "$STORE")" "no stray file in the store"
assert_empty "$(links_of_kind "$HOST" veth)" "no veth left in the host namespace"
left=0
for i in $(seq 1 "$N"); do
    ns="NS_k$i"
    [[ $(links "${!ns}") == lo ]] || { left=$((left + 1)); log "con-$i: $(links "${!ns}" | tr '\n' ' ')"; }
done
assert_eq "$left" 0 "no container has a link but lo"
assert_empty "$(in_host iptables-save -t nat 2>/dev/null | grep -E -- '^:CNI-|id: \\"con-')" "no CNI- chain or masquerade rule in iptables"
assert_empty "$(in_host nft list ruleset 2>/dev/null | grep -F -- 'id: con-')" "no masquerade rule in nft"
finish
