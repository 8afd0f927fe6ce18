#!/usr/bin/env bash
# Installs the Debian packages the demo and the tests need, only those missing.
# Usage: scripts/deps.sh [demo|test]
set -euo pipefail
want=(iproute2 util-linux iptables nftables iputils-ping procps python3)
if [[ ${1:-test} == test ]]; then
    # The Go reference plugins: interop and side-by-side tests read /usr/lib/cni.
    want+=(containernetworking-plugins)
    # shell-tests/t-podman (containers/podman-e2e.sh): podman 4.3 with its CNI backend, which
    # pulls in conmon and crun, and the static busybox its container rootfs is made of.
    want+=(podman busybox-static)
fi
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for c in cargo rustc; do
    command -v "$c" >/dev/null || { echo "$c is required (a Rust toolchain, 1.95 or newer)" >&2; exit 1; }
done
