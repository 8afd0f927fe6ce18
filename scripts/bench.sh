#!/usr/bin/env bash
# The side-by-side benchmark in one command (run as root): installs what it needs (the
# reference plugins in /usr/lib/cni among them), builds ipcni, installs it into a temp
# dir and runs ipcni-bench there, inside throwaway namespaces. Not part of the test
# suite's pass/fail. Extra arguments go to ipcni-bench (e.g. --cases bridge,ptp).
#
#   sudo scripts/bench.sh [--iterations 40] [--scale 1000] [--parallel 50] [ipcni-bench args…]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
cargo build --release --quiet
bin=$(mktemp -d /tmp/ipcni-bench-bin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
./target/release/ipcni install "$bin" >/dev/null
echo "# ipcni $(git rev-parse --short HEAD 2>/dev/null || echo '?'), reference: $(dpkg-query -W -f='containernetworking-plugins ${Version}' containernetworking-plugins 2>/dev/null)"
echo "# install size: ipcni $(du -sb "$bin" | cut -f1) bytes, reference $(du -sb /usr/lib/cni | cut -f1) bytes"
if (($# == 0)); then
    set -- --iterations 40 --scale 1000 --parallel 50
fi
./target/release/ipcni-bench --ipcni "$bin" "$@"
