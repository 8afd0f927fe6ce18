#!/bin/bash
# Runs the VM kernel cases (shell-tests/qemu/cases/*.sh) inside Debian's stock kernel under
# qemu, for the link types this machine's kernel lacks (ipvlan, vlan, dummy, vrf, ...) and
# bridge VLAN filtering.
#
#   shell-tests/qemu/run-vm.sh [-v] [CASE...]     CASE: a name (smoke), NAME.sh or a path
#   shell-tests/qemu/run-vm.sh --prepare          install, fetch, build; do not boot
#
# Adapted from the recipe in shared/examples/qemu-kernel-test.sh (see shared/qemu-kernel.md):
# the same kernel fetch (`apt-get download` + `dpkg-deb -x`, nothing installed into /boot or
# /lib/modules), the same PVH boot of the uncompressed vmlinux, the same busybox + real
# iproute2 + module-closure initramfs. What this script adds: a statically linked ipcni and
# its plugin symlinks in /opt/ipcni, the case scripts in /cases and their shared helpers
# (case-lib.sh, as /etc/ipcni-case-lib.sh), a PID 1 (guest-init.sh) that runs each case
# with a timeout and prints `QEMU-CASE <name> PASS|FAIL|SKIP <reason>`, and the parsing of
# those lines here.
#
# Nothing runs on the host but apt-get, cargo, file building and qemu; the VM has no
# network device, so the host's network namespaces are never touched.
#
# Output: progress lines, then each case's `QEMU-CASE ...` line (the guest's own), the
# output of failed cases (all of the console with -v or IPCNI_QEMU_VERBOSE=1), and a summary
# line `qemu cases: pass=N fail=N skip=N`. The whole console is kept in
# $CACHE/last-console.log.
#
# Exit: 0 when every case passed or skipped; 1 when a case failed or gave no result, or
# ipcni did not build; 77 when the VM cannot run at all (qemu or busybox not installable,
# kernel package not downloadable, the guest did not boot, out of time before booting), with
# the reason as the last line of stdout; 2 on a usage error.
#
# Environment:
#   IPCNI_QEMU_CACHE      kernel cache (default ${XDG_CACHE_HOME:-/var/cache}/ipcni-qemu),
#                         reused across runs
#   IPCNI_QEMU_KVER       kernel ABI to boot, e.g. 6.1.0-57-amd64 (default: what
#                         linux-image-amd64 depends on; offline, the newest cached one)
#   IPCNI_STATIC_BIN      a static ipcni binary to use instead of building one
#   IPCNI_STATIC_TARGET_DIR  CARGO_TARGET_DIR of the static build (default target/static)
#   IPCNI_QEMU_CASE_TIMEOUT  seconds per case inside the VM (default 60)
#   IPCNI_QEMU_BOOT_TIMEOUT  seconds from qemu start to the guest's first line (default 60)
#   IPCNI_QEMU_DEADLINE   epoch seconds by which the whole run must be over; preparation
#                         steps are cut short and the boot is not started when it cannot
#                         finish in time (exit 77). Set by t-qemu-kernel.sh.
#   IPCNI_QEMU_MEM (512M), IPCNI_QEMU_SMP (1), IPCNI_QEMU_ACCEL (tcg)
#   IPCNI_QEMU_KEEP=1     keep the work dir (initramfs tree, console log)
#
# A case may ask for more in its first 20 lines:
#   # qemu-modules: nf_tables nft_chain_nat      kernel modules (with their deps) to load
#   # qemu-files: /usr/sbin/nft /etc/foo         host files or dirs copied to the same path;
#                                                ELF files bring their shared libraries
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${IPCNI_QEMU_CACHE:-${XDG_CACHE_HOME:-/var/cache}/ipcni-qemu}
CASE_TIMEOUT=${IPCNI_QEMU_CASE_TIMEOUT:-60}
BOOT_TIMEOUT=${IPCNI_QEMU_BOOT_TIMEOUT:-60}
MEM=${IPCNI_QEMU_MEM:-512M}
SMP=${IPCNI_QEMU_SMP:-1}
ACCEL=${IPCNI_QEMU_ACCEL:-tcg}
STATIC_TARGET_DIR=${IPCNI_STATIC_TARGET_DIR:-$ROOT/target/static}
TRIPLE=x86_64-unknown-linux-gnu
VERBOSE=${IPCNI_QEMU_VERBOSE:-0}
PREPARE_ONLY=0
BASE_MODS="veth bridge ipvlan 8021q dummy vrf macvlan vxlan"

T_START=$(date +%s.%N)
say() { printf '# %s\n' "$*"; }
elapsed() { awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# cannot run the VM: the reason is the last stdout line
skip() {
    printf '%s\n' "$*"
    exit 77
}
fail() {
    printf 'run-vm: %s\n' "$*"
    exit 1
}

args=()
for a in "$@"; do
    case $a in
        -v | --verbose) VERBOSE=1 ;;
        --prepare) PREPARE_ONLY=1 ;;
        -h | --help)
            sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "run-vm: unknown option $a" >&2
            exit 2
            ;;
        *) args+=("$a") ;;
    esac
done

# ---------------------------------------------------------------- time budget

# remaining: seconds left before IPCNI_QEMU_DEADLINE (a large number without one)
remaining() {
    if [[ -n ${IPCNI_QEMU_DEADLINE:-} ]]; then
        echo $((IPCNI_QEMU_DEADLINE - $(date +%s)))
    else
        echo 86400
    fi
}
# budgeted WHAT LOG CMD...: runs CMD with its output appended to LOG, cut short at the
# deadline (then: skip)
budgeted() {
    local what=$1 log=$2 left rc
    shift 2
    left=$(remaining)
    ((left > 0)) || skip "out of time before $what (IPCNI_QEMU_DEADLINE)"
    timeout -k 5 "$left" "$@" >>"$log" 2>&1
    rc=$?
    if [[ -n ${IPCNI_QEMU_DEADLINE:-} ]] && ((rc == 124 || rc == 137)); then
        skip "out of time during $what after $(elapsed)s (the next run reuses what was done)"
    fi
    return $rc
}

# ---------------------------------------------------------------- the cases

CASES=()
if ((${#args[@]} == 0)); then
    for c in "$HERE"/cases/*.sh; do
        [[ -e $c ]] && CASES+=("$c")
    done
else
    for a in "${args[@]}"; do
        if [[ -f $a ]]; then
            CASES+=("$(cd "$(dirname "$a")" && pwd)/$(basename "$a")")
        elif [[ -f $HERE/cases/$a ]]; then
            CASES+=("$HERE/cases/$a")
        elif [[ -f $HERE/cases/$a.sh ]]; then
            CASES+=("$HERE/cases/$a.sh")
        else
            echo "run-vm: no case $a" >&2
            exit 2
        fi
    done
fi
if ((${#CASES[@]} == 0)) && ((PREPARE_ONLY == 0)); then
    skip "no case scripts in $HERE/cases"
fi
declare -A case_seen=()
for c in "${CASES[@]}"; do
    n=$(basename "$c" .sh)
    [[ $n =~ ^[A-Za-z0-9._-]+$ ]] || { echo "run-vm: case name $n: use letters, digits, . _ -" >&2; exit 2; }
    [[ -z ${case_seen[$n]:-} ]] || { echo "run-vm: two cases named $n" >&2; exit 2; }
    case_seen[$n]=1
done

# what the cases ask for: "# qemu-modules:" and "# qemu-files:" in their first 20 lines
EXTRA_MODS=""
EXTRA_FILES=()
for c in "${CASES[@]}"; do
    while IFS= read -r line; do
        case $line in
            "# qemu-modules:"*) EXTRA_MODS="$EXTRA_MODS ${line#*:}" ;;
            "# qemu-files:"*)
                read -r -a fs <<<"${line#*:}"
                EXTRA_FILES+=("${fs[@]}")
                ;;
        esac
    done < <(head -n 20 "$c")
done
MODS=$(printf '%s\n' $BASE_MODS $EXTRA_MODS | awk '!seen[$0]++' | tr '\n' ' ')

# ---------------------------------------------------------------- host tools

export DEBIAN_FRONTEND=noninteractive
mkdir -p "$CACHE" || skip "cannot create the cache dir $CACHE"
APT_LOG=$CACHE/apt.log

# (pipes into `grep -q` are avoided: with pipefail, the writer's SIGPIPE fails the pipe)
is_static() { # FILE: an ELF without an interpreter or shared libraries
    local f=$1 out
    if command -v file >/dev/null; then
        out=$(file -L "$f")
        [[ $out == *"statically linked"* || $out == *"static-pie linked"* ]] || return 1
    fi
    out=$(ldd "$f" 2>&1)
    [[ $out != *"=>"* ]]
}

APT_UPDATED=0
apt_update() {
    ((APT_UPDATED)) && return 0
    APT_UPDATED=1
    say "apt-get update"
    budgeted "apt-get update" "$APT_LOG" apt-get update
}
# apt_install PKG...: apt-get install, after an update when the first try fails
apt_install() {
    [[ $(id -u) == 0 ]] || skip "$* not installed and not root to install it"
    command -v apt-get >/dev/null || skip "$* not installed and no apt-get"
    say "installing $*"
    if ! budgeted "apt-get install $*" "$APT_LOG" apt-get install -y --no-install-recommends "$@"; then
        apt_update
        budgeted "apt-get install $*" "$APT_LOG" apt-get install -y --no-install-recommends "$@" ||
            skip "cannot install $* (see $APT_LOG)"
    fi
}

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
{ [[ -x /bin/busybox ]] && is_static /bin/busybox; } || need+=(busybox-static)
[[ -x /usr/sbin/ip || -x /sbin/ip ]] || need+=(iproute2)
((${#need[@]} == 0)) || apt_install "${need[@]}"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not found after installing qemu-system-x86"
is_static /bin/busybox || skip "/bin/busybox is not statically linked (busybox-static not installed?)"
bb_nsenter=$(/bin/busybox nsenter --help 2>&1)
[[ $bb_nsenter == *"-n[FILE]"* ]] || skip "this busybox has no nsenter applet taking --net=FILE"
for t in dpkg-deb apt-get gzip; do
    command -v $t >/dev/null || skip "$t not found"
done
IP_BIN=$(command -v ip || echo /usr/sbin/ip)
BRIDGE_BIN=$(command -v bridge || echo /usr/sbin/bridge)
[[ -x $IP_BIN && -x $BRIDGE_BIN ]] || skip "iproute2's ip or bridge not found"

# ---------------------------------------------------------------- kernel (cached)

exec 9>"$CACHE/.lock"
flock 9 2>/dev/null || true # one fetch at a time; concurrent runs share the cache

KVER=${IPCNI_QEMU_KVER:-}
if [[ -z $KVER ]]; then
    kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
    PKG=$(kpkg)
    if [[ -z $PKG ]]; then
        # no package lists: take the newest cached kernel, else update and ask again
        KVER=$(find "$CACHE" -maxdepth 1 -name 'linux-image-*' -type d -printf '%f\n' 2>/dev/null |
            sed 's/^linux-image-//' | sort -V | tail -n 1)
        if [[ -z $KVER ]]; then
            apt_update
            PKG=$(kpkg)
        fi
    fi
    [[ -z $KVER && -n $PKG ]] && KVER=${PKG#linux-image-}
    [[ -n $KVER ]] || skip "cannot tell which kernel package to use (apt-cache depends linux-image-amd64 gave nothing)"
fi
KROOT=$CACHE/linux-image-$KVER
MODSRC=$KROOT/lib/modules/$KVER
if [[ ! -f $MODSRC/modules.dep ]]; then
    say "fetching linux-image-$KVER into $CACHE"
    dl=$CACHE/download
    rm -rf "$dl" "$KROOT.tmp"
    mkdir -p "$dl"
    chmod 777 "$dl" # apt-get download drops to the _apt user when it can
    cd "$dl" || skip "cannot enter $dl"
    if ! budgeted "downloading the kernel" "$APT_LOG" apt-get download "linux-image-$KVER"; then
        apt_update
        budgeted "downloading the kernel" "$APT_LOG" apt-get download "linux-image-$KVER" ||
            skip "cannot download linux-image-$KVER (see $APT_LOG)"
    fi
    cd "$ROOT" || exit 1
    dpkg-deb -x "$dl"/linux-image-"$KVER"_*.deb "$KROOT.tmp" || skip "cannot unpack linux-image-$KVER"
    # the .deb has no modules.dep (its postinst runs depmod): make one with busybox
    /bin/busybox depmod -b "$KROOT.tmp" "$KVER" || skip "depmod failed for $KVER"
    rm -rf "$KROOT" && mv "$KROOT.tmp" "$KROOT"
    rm -rf "$dl"
fi
VMLINUZ=$KROOT/boot/vmlinuz-$KVER
[[ -f $VMLINUZ ]] || skip "no $VMLINUZ in the cached kernel package"
# Boot the uncompressed ELF vmlinux through qemu's PVH entry: skips the in-guest xz
# decompressor (~5 s under TCG). Extracted once; without python3, boot the bzImage.
VMLINUX=$CACHE/vmlinux-$KVER
if [[ ! -s $VMLINUX ]] && command -v python3 >/dev/null; then
    python3 - "$VMLINUZ" "$VMLINUX.tmp" <<'PY' && mv "$VMLINUX.tmp" "$VMLINUX"
import lzma, sys
d = open(sys.argv[1], 'rb').read()
i = d.find(b'\xfd7zXZ\x00')            # Debian amd64 kernels are CONFIG_KERNEL_XZ
if i < 0: sys.exit("no xz payload in bzImage")
out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[i:])
if out[:4] != b'\x7fELF': sys.exit("payload is not an ELF vmlinux")
open(sys.argv[2], 'wb').write(out)
PY
fi
BOOTKERNEL=$VMLINUZ
[[ -s $VMLINUX ]] && BOOTKERNEL=$VMLINUX
flock -u 9 2>/dev/null || true
say "kernel $KVER ($(basename "$BOOTKERNEL")), ready at $(elapsed)s"

# ---------------------------------------------------------------- static ipcni

if [[ -n ${IPCNI_STATIC_BIN:-} ]]; then
    BIN=$IPCNI_STATIC_BIN
    [[ -x $BIN ]] || fail "IPCNI_STATIC_BIN=$BIN is not executable"
else
    command -v cargo >/dev/null || fail "cargo not found (needed to build the static ipcni)"
    say "building the static ipcni (CARGO_TARGET_DIR=$STATIC_TARGET_DIR)"
    BUILD_LOG=$CACHE/static-build.log
    : >"$BUILD_LOG"
    cd "$ROOT" || exit 1
    CARGO_TARGET_DIR=$STATIC_TARGET_DIR RUSTFLAGS="-C target-feature=+crt-static" \
        budgeted "building the static ipcni" "$BUILD_LOG" cargo build --release --target "$TRIPLE"
    rc=$?
    if ((rc != 0)); then
        tail -n 30 "$BUILD_LOG"
        fail "the static build failed (exit $rc; full log: $BUILD_LOG)"
    fi
    BIN=$STATIC_TARGET_DIR/$TRIPLE/release/ipcni
fi
is_static "$BIN" || fail "$BIN is not statically linked: $(file -L "$BIN" 2>&1)"
say "static ipcni ready at $(elapsed)s ($(file -L "$BIN" 2>/dev/null | grep -o 'stat[a-z-]* linked' || echo 'no dynamic libraries'))"

if ((PREPARE_ONLY)); then
    say "prepared in $(elapsed)s (qemu, busybox, kernel $KVER, static ipcni)"
    exit 0
fi

# ---------------------------------------------------------------- initramfs

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ipcni-qemu.XXXXXX")
QPID=""
cleanup() {
    [[ -n $QPID ]] && kill "$QPID" 2>/dev/null
    if [[ ${IPCNI_QEMU_KEEP:-0} == 1 ]]; then
        echo "run-vm: work dir kept: $WORK" >&2
    else
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

R=$WORK/root
mkdir -p "$R"/{bin,sbin,proc,sys,dev,run,tmp,etc,cases,opt,var/lib,lib/modules/"$KVER"}

# copy_elf_libs FILE: the shared libraries FILE needs, at their host paths
copy_elf_libs() {
    local lib
    for lib in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*'); do
        [[ -e $R$lib ]] || cp --parents -L "$lib" "$R"
    done
}
cp /bin/busybox "$R/bin/busybox"
# the kernel's request_module() runs /sbin/modprobe (soft dependencies, `ip link add type X`)
ln -s ../bin/busybox "$R/sbin/modprobe"
# the real iproute2: busybox's ip has no netns, -j, -batch; bridge: VLAN and port ops
cp -L "$IP_BIN" "$R/sbin/ip"
cp -L "$BRIDGE_BIN" "$R/sbin/bridge"
copy_elf_libs "$R/sbin/ip"
copy_elf_libs "$R/sbin/bridge"
[[ -d /etc/iproute2 ]] && cp -r /etc/iproute2 "$R/etc/"
[[ -d /usr/share/iproute2 ]] && cp -r --parents /usr/share/iproute2 "$R"
for f in "${EXTRA_FILES[@]}"; do
    [[ -e $f ]] || fail "a case asks for $f (qemu-files), which is not on this host"
    cp -r --parents -L "$f" "$R"
    [[ -f $f && $(head -c 4 "$f" | tr -d '\0') == $'\x7fELF' ]] && copy_elf_libs "$f"
done

# ipcni and its plugin symlinks
"$BIN" install "$R/opt/ipcni" >/dev/null 2>&1 || fail "$BIN install $R/opt/ipcni failed"
[[ -x $R/opt/ipcni/bridge && -x $R/opt/ipcni/loopback ]] || fail "ipcni install made no bridge/loopback link"

# Module closure: modules.dep ("path: dep dep ...") plus soft dependencies ("softdep=pre:
# crc32c" in a module's .modinfo, names or aliases that the kernel asks /sbin/modprobe for
# at load time, e.g. libcrc32c -> crypto-crc32c -> crc32c_generic).
declare -A seen=()
mod_path() { # NAME: the module's path in modules.dep, nothing when built in or unknown
    local m=${1//[-_]/[-_]}
    grep -m1 -E "(^|/)$m\.ko(\.[a-z]+)?:" "$MODSRC/modules.dep" | cut -d: -f1
}
add_mod() { # PATH
    [[ -n ${seen[$1]:-} ]] && return 0
    seen[$1]=1
    local line d soft name p a
    line=$(grep -m1 "^$1:" "$MODSRC/modules.dep")
    for d in ${line#*:}; do add_mod "$d"; done
    soft=$(grep -a -o 'softdep=[ -~]*' "$MODSRC/$1" 2>/dev/null | sed 's/^softdep=//')
    for name in $soft; do
        case $name in pre: | post:) continue ;; esac
        p=$(mod_path "$name")
        if [[ -n $p ]]; then
            add_mod "$p"
            continue
        fi
        for a in $(awk -v n="$name" '$1 == "alias" && ($2 == n || $2 == "crypto-" n) {print $3}' "$MODSRC/modules.alias" 2>/dev/null); do
            p=$(mod_path "$a")
            [[ -n $p ]] && add_mod "$p"
        done
    done
}
for m in $MODS; do
    p=$(mod_path "$m")
    if [[ -z $p ]]; then
        grep -q -E "/${m//[-_]/[-_]}\.ko$" "$MODSRC/modules.builtin" && continue
        fail "module $m is not in kernel $KVER"
    fi
    add_mod "$p"
done
for p in "${!seen[@]}"; do
    mkdir -p "$R/lib/modules/$KVER/$(dirname "$p")"
    cp "$MODSRC/$p" "$R/lib/modules/$KVER/$p"
done
cp "$MODSRC"/modules.order "$MODSRC"/modules.builtin "$R/lib/modules/$KVER/"
/bin/busybox depmod -b "$R" "$KVER" || fail "depmod in the initramfs failed"

# the cases and PID 1
guest_cases=""
for c in "${CASES[@]}"; do
    cp "$c" "$R/cases/"
    guest_cases="$guest_cases /cases/$(basename "$c")"
done
cp "$HERE/guest-init.sh" "$R/init"
chmod 755 "$R/init"
# the cases' shared helpers (sourced by each case; not in /cases, whose *.sh all run)
cp "$HERE/case-lib.sh" "$R/etc/ipcni-case-lib.sh" || fail "cannot copy $HERE/case-lib.sh into the initramfs"
cat >"$R/etc/qemu-run.conf" <<EOF
MODS="$MODS"
CASES="$guest_cases"
CASE_TIMEOUT=$CASE_TIMEOUT
EOF

INITRD=$WORK/initrd.gz
(cd "$R" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 >"$INITRD") || fail "building the initramfs failed"
say "initramfs $(du -h "$INITRD" | cut -f1) (${#seen[@]} modules, ${#CASES[@]} cases), ready at $(elapsed)s"

# ---------------------------------------------------------------- boot

n_cases=${#CASES[@]}
RUN_TIMEOUT=$((BOOT_TIMEOUT + n_cases * (CASE_TIMEOUT + 10) + 20))
left=$(remaining)
if [[ -n ${IPCNI_QEMU_DEADLINE:-} ]]; then
    # the boot alone takes ~10 s under TCG; without that much left, do not start
    ((left >= 15)) || skip "out of time before booting the VM (${left}s left after $(elapsed)s of preparation; the next run reuses it)"
    ((RUN_TIMEOUT > left)) && RUN_TIMEOUT=$left
fi
LOG=$WORK/console.log
say "booting (accel=$ACCEL, mem=$MEM, timeout ${RUN_TIMEOUT}s)"
t_boot=$(date +%s)
qemu-system-x86_64 -accel "$ACCEL" -m "$MEM" -smp "$SMP" \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$BOOTKERNEL" -initrd "$INITRD" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init" </dev/null >"$LOG" 2>&1 &
QPID=$!
booted=0
why=""
while kill -0 "$QPID" 2>/dev/null; do
    sleep 0.2
    now=$(date +%s)
    if ((!booted)) && grep -q 'QEMU-BOOTED' "$LOG"; then
        booted=1
    fi
    if ((!booted && now - t_boot >= BOOT_TIMEOUT)); then
        why="boot timeout"
        break
    fi
    if ((now - t_boot >= RUN_TIMEOUT)); then
        why="run timeout"
        break
    fi
done
if [[ -n $why ]]; then
    kill "$QPID" 2>/dev/null
    sleep 0.5
    kill -9 "$QPID" 2>/dev/null
fi
wait "$QPID" 2>/dev/null
qrc=$?
QPID=""
t_end=$(date +%s)
tr -d '\r' <"$LOG" >"$WORK/console.txt"
cp "$WORK/console.txt" "$CACHE/last-console.log" 2>/dev/null
grep -q 'QEMU-BOOTED' "$WORK/console.txt" && booted=1

if ((!booted)); then
    tail -n 20 "$WORK/console.txt" | sed 's/^/    | /'
    case $why in
        "boot timeout") skip "the VM did not boot within ${BOOT_TIMEOUT}s (console: $CACHE/last-console.log)" ;;
        "run timeout") skip "out of time while the VM was booting ($((t_end - t_boot))s; console: $CACHE/last-console.log)" ;;
    esac
    skip "qemu exited with status $qrc before the guest booted (console: $CACHE/last-console.log)"
fi

if ((VERBOSE)); then
    echo "---- console"
    cat "$WORK/console.txt"
    echo "---- end of console"
fi

# ---------------------------------------------------------------- results

pass=0 failn=0 skipn=0
for c in "${CASES[@]}"; do
    n=$(basename "$c" .sh)
    line=$(grep -a -o "QEMU-CASE $n \(PASS\|FAIL\|SKIP\).*" "$WORK/console.txt" | tail -n 1)
    if [[ -z $line ]]; then
        if [[ -n $why ]]; then
            line="QEMU-CASE $n FAIL no result: the VM was stopped ($why after $((t_end - t_boot))s)"
        else
            line="QEMU-CASE $n FAIL no result (the VM ended first, qemu status $qrc)"
        fi
    fi
    echo "$line"
    read -r _ _ verdict _ <<<"$line"
    case $verdict in
        PASS) pass=$((pass + 1)) ;;
        SKIP) skipn=$((skipn + 1)) ;;
        *)
            failn=$((failn + 1))
            if ((!VERBOSE)); then
                # the case's output, from its BEGIN line to its result line
                awk -v n="$n" '$0 == "QEMU-CASE-BEGIN " n {on=1} on {print "    " $0} index($0, "QEMU-CASE " n " ") == 1 {on=0}' \
                    "$WORK/console.txt"
            fi
            ;;
    esac
done
grep -a '^QEMU-NOTE' "$WORK/console.txt" | grep -v 'modules loaded' | sed 's/^/# /'
boot_s=$(grep -a -o 'QEMU-DONE uptime [0-9.]*' "$WORK/console.txt" | awk '{print $3}')
say "qemu ran $((t_end - t_boot))s (guest uptime at the end: ${boot_s:-?}s); total $(elapsed)s; console: $CACHE/last-console.log"
echo "qemu cases: pass=$pass fail=$failn skip=$skipn"
((failn == 0))
