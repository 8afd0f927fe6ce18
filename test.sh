#!/usr/bin/env bash
# The whole test suite: installs what it needs, then formatting, lints, unit and golden
# tests, and the kernel tests in throwaway network namespaces. Run as root.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh test
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --quiet 2>&1
echo "== kernel tests"
cargo build --release --quiet
bin=$(mktemp -d /tmp/ipcni-bin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
./target/release/ipcni install "$bin"
# t-fault-injection needs a build whose executor honours IPCNI_FAIL_AT_STEP; build it
# here, outside the per-test timeout.
cargo build --quiet --features fault-injection --target-dir target/fault-injection
fbin=$(mktemp -d /tmp/ipcni-fault-bin.XXXXXX)
trap 'rm -rf "$bin" "$fbin"' EXIT
./target/fault-injection/debug/ipcni install "$fbin"
# The VM test's first run installs qemu, fetches Debian's kernel and builds a static ipcni;
# do that here, outside the per-test timeout, so a clean machine runs the VM cases too.
echo "== preparing the qemu VM for the kernels-we-lack tests"
bash shell-tests/qemu/run-vm.sh --prepare || echo "qemu preparation failed; t-qemu-kernel reports the skip and why"
IPCNI_BIN=$bin IPCNI_FAULT_BIN=$fbin bash shell-tests/run.sh
