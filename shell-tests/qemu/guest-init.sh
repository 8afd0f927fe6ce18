#!/bin/busybox sh
# PID 1 of the test VM that run-vm.sh boots; copied into the initramfs as /init.
#
# Loads the modules, mounts /proc /sys /dev /run (tmpfs, with /run/netns) /tmp, runs every
# case script named in /etc/qemu-run.conf in turn and prints, per case, one line
#
#   QEMU-CASE <name> PASS|FAIL|SKIP <reason>
#
# then QEMU-DONE and powers off. Each case runs as root, in its own session and process
# group, with a clean environment: PATH=/sbin:/bin, IPCNI=/opt/ipcni (ipcni and its plugin
# symlinks), IP=/sbin/ip (iproute2), CASE_NAME, CASE_TMP (an empty directory, also the cwd,
# HOME and TMPDIR). Exit 0 = PASS, 77 = SKIP (reason: the last non-empty stdout line), other
# or killed after CASE_TIMEOUT seconds = FAIL. After each case whatever it left running is
# killed and every namespace and link it left is deleted, so cases do not see each other.
# The cases source their shared helpers from /etc/ipcni-case-lib.sh (case-lib.sh).
#
# Case output goes to the console prefixed with "    | " (stdout) and "    ! " (stderr).
# Debian's busybox runs its own applets before $PATH in sh: a case must call iproute2 as
# $IP (/sbin/ip); programs started with execvp (ipcni runs ip, bridge, nsenter) get
# /sbin/ip and /sbin/bridge from PATH, and busybox's nsenter (which takes --net=FILE).

/bin/busybox --install -s /bin
# busybox's ip applet must not shadow iproute2 for execvp callers
rm -f /bin/ip
export PATH=/sbin:/bin
IP=/sbin/ip
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/netns /dev/pts /dev/shm
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1

. /etc/qemu-run.conf # MODS, CASES, CASE_TIMEOUT

# centiseconds since boot (/proc/uptime has exactly two decimals)
now_cs() {
    read -r up _ </proc/uptime
    echo $((${up%.*} * 100 + 1${up#*.} - 100))
}
# alive PID: the process exists and is not a zombie
alive() {
    [ -r "/proc/$1/stat" ] || return 1
    read -r st <"/proc/$1/stat" 2>/dev/null || return 1
    st=${st##*) }
    [ "${st%% *}" != Z ]
}
secs() { # centiseconds -> "S.CC"
    printf '%d.%02d' $(($1 / 100)) $(($1 % 100))
}

echo "QEMU-BOOTED kernel $(uname -r), uptime $(secs "$(now_cs)")s"
for m in $MODS; do
    opts=""
    [ "$m" = dummy ] && opts=numdummies=0 # no dummy0 made at load time
    modprobe "$m" $opts || echo "QEMU-NOTE modprobe $m failed"
done
$IP link set lo up
echo "QEMU-NOTE modules loaded, uptime $(secs "$(now_cs)")s"

# Deletes what a case left behind: namespaces, links in the initial namespace, CNI state.
cleanup_after() {
    left=""
    for ns in /run/netns/*; do
        [ -e "$ns" ] || continue
        left="$left netns:${ns##*/}"
        $IP netns del "${ns##*/}" 2>/dev/null || { umount "$ns" 2>/dev/null; rm -f "$ns"; }
    done
    for l in /sys/class/net/*; do
        l=${l##*/}
        [ "$l" = lo ] && continue
        [ -e "/sys/class/net/$l" ] || continue # went with its peer
        left="$left link:$l"
        $IP link del "$l" 2>/dev/null
    done
    rm -rf /run/ipcni /var/lib/cni
    [ -n "$left" ] && echo "QEMU-NOTE case $1 left behind (now deleted):$left"
}

# prefix TEXT: copies stdin to stdout with TEXT before each line, a line at a time (sed
# holds back the last line it read until the next one or EOF)
prefix() {
    awk -v p="$1" '{ print p $0; fflush() }'
}

run_case() {
    c=$1
    name=${c##*/}
    name=${name%.sh}
    d=/tmp/case-$name
    mkdir -p "$d/home"
    mkfifo "$d/err"
    echo "QEMU-CASE-BEGIN $name"
    prefix '    ! ' <"$d/err" &
    errpid=$!
    t0=$(now_cs)
    # the case in a new session (setsid): its pid is its process group, killed as a whole
    setsid sh -c '
        echo $$ >"$1/pid"
        cd "$1/home" || exit 99
        env -i PATH=/sbin:/bin HOME="$1/home" TMPDIR="$1/home" CASE_TMP="$1/home" \
            CASE_NAME="$2" IPCNI=/opt/ipcni IP=/sbin/ip sh "$3" 2>"$1/err"
        echo $? >"$1/rc"' _ "$d" "$name" "$c" </dev/null |
        tee "$d/stdout" | prefix '    | ' &
    outpid=$!
    n=0
    while [ ! -s "$d/pid" ] && [ $n -lt 100 ]; do
        n=$((n + 1))
        sleep 0.05
    done
    pid=$(cat "$d/pid" 2>/dev/null)
    [ -n "$pid" ] || pid=$outpid
    limit=$((CASE_TIMEOUT * 100))
    timed_out=0
    while alive "$pid"; do
        if [ $(($(now_cs) - t0)) -ge "$limit" ]; then
            timed_out=1
            kill -9 -- "-$pid" 2>/dev/null
            break
        fi
        sleep 0.1
    done
    el=$(($(now_cs) - t0))
    # leftovers of the case's process group hold the output pipes open
    kill -9 -- "-$pid" 2>/dev/null
    n=0
    while alive "$outpid" || alive "$errpid"; do
        n=$((n + 1))
        [ $n -gt 30 ] && break
        sleep 0.1
    done
    # anything that escaped the group (daemons): everything but PID 1
    kill -9 -1 2>/dev/null
    wait 2>/dev/null
    rc=$(cat "$d/rc" 2>/dev/null)
    if [ "$timed_out" = 1 ]; then
        echo "QEMU-CASE $name FAIL timed out after ${CASE_TIMEOUT}s"
    elif [ -z "$rc" ]; then
        echo "QEMU-CASE $name FAIL killed after $(secs "$el")s"
    elif [ "$rc" = 0 ]; then
        echo "QEMU-CASE $name PASS in $(secs "$el")s"
    elif [ "$rc" = 77 ]; then
        reason=$(grep -v '^[[:space:]]*$' "$d/stdout" | tail -n 1 | tr -d '\r' | cut -c1-300)
        echo "QEMU-CASE $name SKIP ${reason:-no reason given}"
    else
        echo "QEMU-CASE $name FAIL exit $rc after $(secs "$el")s"
    fi
    cleanup_after "$name"
}

for c in $CASES; do
    run_case "$c"
done
echo "QEMU-DONE uptime $(secs "$(now_cs)")s"
sync
poweroff -f
