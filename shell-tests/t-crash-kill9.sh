#!/bin/bash
# Crash safety: a bridge + host-local ADD with ipMasq is killed with SIGKILL after a
# random delay (0 to the duration of a whole ADD, measured first), many times. After each crash the runtime's cleanup must leave
# nothing of that container: in even runs a DEL (the netns still there), in odd runs the
# netns is deleted (as the runtime does) and GC runs with an empty
# cni.dev/valid-attachments list. Then: no container link but lo (DEL runs), no host veth,
# no masquerade rule or chain for the container, no reservation, no stray file in the
# store but the temporary file of a write the kill interrupted (a final GC must reclaim
# those); and the store still works: every fourth run, an ADD of the same container
# succeeds (and is DELed).
# Runs alternate between the iptables and the nftables backend (run mod 4).
#
# The delays come from bash's RANDOM seeded with IPCNI_CRASH_SEED (printed; set it to
# replay a failing sequence). IPCNI_CRASH_RUNS sets the number of runs (default 60).
#
# The plugin is killed alone, as a runtime's context timeout does; a tool it started
# (ip -batch, iptables-restore, nft) may outlive it and finish its change. The cleanup
# waits until every process of the plugin's session is gone, so it sees the final state.
. "$(dirname "$0")/lib.sh"

command -v setsid >/dev/null || skip "setsid not found"
RUNS=${IPCNI_CRASH_RUNS:-60}
SEED=${IPCNI_CRASH_SEED:-$(( $(date +%s%N) % 32768 ))}
RANDOM=$SEED
echo "# seed: IPCNI_CRASH_SEED=$SEED (runs: $RUNS)"

setup_host
NET=crashnet
BR=cni-crash0
STORE=$(store_dir $NET)
BACKENDS=()
iptables_ok && BACKENDS+=(iptables)
nft_ok && BACKENDS+=(nftables)
((${#BACKENDS[@]} > 0)) || skip "neither iptables nor nft is usable in a namespace"
conf_for() {
    bridge_conf $NET $BR 10.96.0.0/24 "\"isGateway\":true,\"ipMasq\":true,\"ipMasqBackend\":\"$1\""
}

# masq_state ID: the masquerade rules that name the container, and CNI- chains.
masq_state() {
    in_host iptables-save -t nat 2>/dev/null | grep -E -- "id: \\\\?\"$1\\\\?\"|^:CNI-"
    in_host nft list ruleset 2>/dev/null | grep -F -- "id: $1\""
}

# The kill delays span a whole ADD as measured here (launcher included), so they keep
# landing inside ADDs however fast the plugin gets: a fixed 0-30 ms window stopped doing
# that once an ADD took some 10 ms.
mk_ns calib
calib_ns=/run/netns/$NS_calib
add_ms=1
declare -A seen
# Each backend twice: the first ADD also makes the bridge and the shared chains.
for backend in "${BACKENDS[@]}" "${BACKENDS[@]}"; do
    printf '%s' "$(conf_for "$backend")" >"$T_TMP/conf.json"
    t0=$(date +%s%N)
    ip netns exec "$HOST" env -i PATH="$PATH" IPCNI_LOCK_DIR="$IPCNI_LOCK_DIR" CNI_COMMAND=ADD \
        CNI_CONTAINERID=calib CNI_NETNS="$calib_ns" CNI_IFNAME=eth0 CNI_PATH="$IPCNI_BIN" \
        "$IPCNI_BIN/bridge" <"$T_TMP/conf.json" >/dev/null 2>&1
    ms=$((($(date +%s%N) - t0) / 1000000))
    [[ -n ${seen[$backend]:-} ]] && ((ms > add_ms)) && add_ms=$ms
    seen[$backend]=1
    cni DEL calib "$NS_calib" eth0 "$(conf_for "$backend")" >/dev/null
    [[ $CNI_RC == 0 ]] || not_ok "calibration DEL ($backend)"
done
del_ns "$NS_calib"
echo "# an ADD takes up to $add_ms ms here: kill delays 0-$add_ms ms"

completed=0 killed_clean=0 killed_mid=0 failures_before=0 stale_tmp=0
for ((i = 1; i <= RUNS; i++)); do
    backend=${BACKENDS[$(((i - 1) / 2 % ${#BACKENDS[@]}))]}
    conf=$(conf_for "$backend")
    id="crash-$i"
    mk_ns "r$i"
    ns="NS_r$i"
    ns=${!ns}
    printf '%s' "$conf" >"$T_TMP/conf.json"
    delay_ms=$((RANDOM % (add_ms + 1)))

    # The ADD, killed after delay_ms. setsid: its own session, to wait for what it started.
    setsid ip netns exec "$HOST" env -i PATH="$PATH" IPCNI_LOCK_DIR="$IPCNI_LOCK_DIR" CNI_COMMAND=ADD \
        CNI_CONTAINERID="$id" CNI_NETNS="/run/netns/$ns" CNI_IFNAME=eth0 CNI_PATH="$IPCNI_BIN" \
        "$IPCNI_BIN/bridge" <"$T_TMP/conf.json" >"$T_TMP/add.out" 2>"$T_TMP/add.err" &
    pid=$!
    sleep "$(printf '0.%03d' "$delay_ms")"
    kill -KILL "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null   # no "Killed" job report on stderr
    rc=$?
    # (Zombies do not count: they wait for init to reap them and change nothing.)
    for _ in $(seq 1 100); do
        ps -o stat= -s "$pid" | grep -q -v '^Z' || break
        sleep 0.02
    done

    # What the crash left, for the tally.
    left_veth=$(links_of_kind "$HOST" veth | grep -c .)
    left_res=$(reservations "$STORE" | grep -c .)
    left_masq=$(masq_state "$id" | grep -c -v '^:CNI-')
    if [[ $rc == 0 ]]; then
        completed=$((completed + 1)); what=completed
    elif ((rc == 137 && left_veth + left_res + left_masq == 0)); then
        killed_clean=$((killed_clean + 1)); what="killed before any change"
    elif ((rc == 137)); then
        killed_mid=$((killed_mid + 1)); what="killed mid-ADD (veth $left_veth, reservations $left_res, masq rules $left_masq)"
    else
        what="ADD failed on its own (exit $rc): $(<"$T_TMP/add.out")"
        failures_before=$((failures_before + 1))
    fi

    if ((i % 2 == 0)); then
        how=DEL
        cni DEL "$id" "$ns" eth0 "$conf" >/dev/null
        [[ $CNI_RC == 0 ]] || not_ok "run $i ($what, $backend): DEL exits 0 (got $CNI_RC: $CNI_OUT)"
        ctr_links=$(links "$ns" | grep -v -x lo)
    else
        how=GC
        del_ns "$ns"
        gc_conf=$(with_key "$(with_key "$conf" cniVersion '"1.1.0"')" cni.dev/valid-attachments '[]')
        plugin_raw bridge "$gc_conf" CNI_COMMAND=GC CNI_PATH="$IPCNI_BIN" >/dev/null
        [[ $CNI_RC == 0 ]] || not_ok "run $i ($what, $backend): GC exits 0 (got $CNI_RC: $CNI_OUT)"
        ctr_links=
    fi
    # A deleted namespace takes its veth pair with it, asynchronously.
    for _ in $(seq 1 50); do
        [[ -z $(links_of_kind "$HOST" veth) ]] && break
        sleep 0.02
    done
    leftovers=$(
        [[ -n $ctr_links ]] && echo "container links: $ctr_links"
        v=$(links_of_kind "$HOST" veth) && [[ -n $v ]] && echo "host veths: $v"
        m=$(masq_state "$id") && [[ -n $m ]] && echo "masquerade: $m"
        r=$(reservations "$STORE") && [[ -n $r ]] && echo "reservations: $r"
        x=$(store_extras "$STORE" | grep -v '^\.tmp-') && [[ -n $x ]] && echo "store files: $x"
    )
    # A temporary file of a reservation being written when the kill came: it never
    # parses as an address, so it reserves nothing; GC reclaims it (checked at the end).
    tmp_files=$(store_extras "$STORE" | grep -c '^\.tmp-')
    ((tmp_files > 0)) && { stale_tmp=$((stale_tmp + tmp_files)); log "run $i: $tmp_files temporary file(s) left in the store"; }
    if [[ -z $leftovers ]]; then
        ok "run $i: delay ${delay_ms} ms, $what, $backend, $how leaves nothing"
    else
        not_ok "run $i: delay ${delay_ms} ms, $what, $backend, $how leaves nothing"
        printf '%s\n' "$leftovers" | sed 's/^/    /'
    fi

    # Every fourth run (and the last): the store and the bridge still serve an ADD of
    # the same container.
    if ((i % 4 != 0 && i != RUNS)); then
        [[ $how == DEL ]] && del_ns "$ns"
        continue
    fi
    [[ $how == GC ]] && { mk_ns "s$i"; ns="NS_s$i"; ns=${!ns}; }
    cni ADD "$id" "$ns" eth0 "$conf" >/dev/null
    if [[ $CNI_RC == 0 ]] && [[ $(reservations "$STORE" | grep -c .) == 1 ]]; then
        cni DEL "$id" "$ns" eth0 "$conf" >/dev/null
        [[ $CNI_RC == 0 && -z $(reservations "$STORE") ]] || not_ok "run $i: DEL after the follow-up ADD releases"
    else
        not_ok "run $i: a following ADD works (exit $CNI_RC: $CNI_OUT)"
        cni DEL "$id" "$ns" eth0 "$conf" >/dev/null
    fi
    del_ns "$ns"
done

# GC with nothing valid reclaims what crashes left in the store.
plugin_raw bridge "$(with_key "$(with_key "$(conf_for "${BACKENDS[0]}")" cniVersion '"1.1.0"')" cni.dev/valid-attachments '[]')" \
    CNI_COMMAND=GC CNI_PATH="$IPCNI_BIN" >/dev/null
assert_rc 0 "a final GC with an empty valid-attachments list"
assert_empty "$(store_extras "$STORE")" "the store holds only lock and last_reserved_ip.* ($stale_tmp temporary files were left by kills)"

echo "# $RUNS crash runs (seed $SEED): $killed_mid killed mid-ADD, $killed_clean killed before any change, $completed completed before the kill, $failures_before failed on their own"
assert_eq "$failures_before" 0 "no ADD failed by itself"
# With delays spread over a whole ADD, many kills must land inside one; otherwise this
# test did not test crashes.
if ((killed_mid * 4 >= RUNS)); then
    ok "at least a quarter of the kills landed mid-ADD ($killed_mid of $RUNS)"
else
    not_ok "at least a quarter of the kills landed mid-ADD ($killed_mid of $RUNS)"
fi
finish
