#!/bin/bash
# 20 ADDs in parallel on one (not yet existing) bridge all succeed with 20 distinct
# addresses; 20 DELs in parallel then leave no reservation and no veth. With iptables
# usable, every attachment also masquerades (iptables backend), so the parallel runs
# also race on the nat table: 20 chains after the ADDs, none after the DELs.
. "$(dirname "$0")/lib.sh"

N=20
setup_host
for i in $(seq 1 $N); do mk_ns "c$i"; done
NET=parnet
BR=cni-par0
if iptables_ok; then
    MASQ=1
    CONF=$(bridge_conf $NET $BR 10.91.0.0/24 '"isGateway":true,"ipMasq":true,"ipMasqBackend":"iptables"')
else
    MASQ=
    log "iptables unusable: parallel masquerading is not covered"
    CONF=$(bridge_conf $NET $BR 10.91.0.0/24 '"isGateway":true')
fi
cni_chains() { in_host iptables -t nat -S 2>/dev/null | grep -c -- "^-N CNI-"; }
STORE=$(store_dir $NET)
RES="$T_TMP/results"
mkdir -p "$RES"

# run_bg CMD I: one plugin call in the background, its exit code and stdout in $RES.
run_bg() {
    local ns_var="NS_c$2"
    (
        cni "$1" "ctr-$2" "${!ns_var}" eth0 "$CONF" >"$RES/$1.$2.log"
        printf '%s' "$CNI_OUT" >"$RES/$1.$2.out"
        echo "$CNI_RC" >"$RES/$1.$2.rc"
    ) &
    T_PIDS+=($!)
}

for i in $(seq 1 $N); do run_bg ADD "$i"; done
wait
T_PIDS=()

failed_adds=0
ADDRS=()
for i in $(seq 1 $N); do
    rc=$(cat "$RES/ADD.$i.rc" 2>/dev/null)
    if [[ $rc != 0 ]]; then
        failed_adds=$((failed_adds + 1))
        log "ADD ctr-$i: exit ${rc:-none}: $(cat "$RES/ADD.$i.out" "$RES/ADD.$i.log" 2>/dev/null)"
        continue
    fi
    a=$(result_addr "$(<"$RES/ADD.$i.out")")
    ADDRS+=("$a")
    ns_var="NS_c$i"
    got=$(addrs "${!ns_var}" eth0)
    [[ $got == "$a/24" ]] || { log "ctr-$i: result says $a, eth0 has '$got'"; failed_adds=$((failed_adds + 1)); }
done
assert_eq "$failed_adds" 0 "all $N parallel ADDs succeed and configure the address they report"
assert_eq "$(printf '%s\n' "${ADDRS[@]}" | sort -u | grep -c .)" "$N" "$N distinct addresses"
assert_eq "$(reservations "$STORE" | grep -c .)" "$N" "$N reservation files"
assert_eq "$(links_of_kind "$HOST" veth | grep -c .)" "$N" "$N veths in the host namespace"
assert_eq "$(links_of_kind "$HOST" bridge)" "$BR" "exactly one bridge"
assert_eq "$(addrs "$HOST" "$BR")" "10.91.0.1/24" "the bridge has the gateway address once"
check "ctr-1 pings ctr-$N" pings "$NS_c1" "${ADDRS[-1]}"
[[ -n $MASQ ]] && assert_eq "$(cni_chains)" "$N" "$N CNI- masquerade chains"

for i in $(seq 1 $N); do run_bg DEL "$i"; done
wait
T_PIDS=()
failed_dels=0
for i in $(seq 1 $N); do
    rc=$(cat "$RES/DEL.$i.rc" 2>/dev/null)
    if [[ $rc != 0 ]]; then
        failed_dels=$((failed_dels + 1))
        log "DEL ctr-$i: exit ${rc:-none}: $(cat "$RES/DEL.$i.out" "$RES/DEL.$i.log" 2>/dev/null)"
    fi
done
assert_eq "$failed_dels" 0 "all $N parallel DELs succeed"
assert_empty "$(store_extras "$STORE")" "the store holds only lock and last_reserved_ip.*"
check "the store still exists (with its lock)" test -e "$STORE/lock"
assert_empty "$(links_of_kind "$HOST" veth)" "no veth left in the host namespace"
[[ -n $MASQ ]] && assert_eq "$(cni_chains)" 0 "no CNI- masquerade chain left"

finish
