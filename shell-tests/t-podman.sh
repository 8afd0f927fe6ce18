#!/bin/bash
# podman 4.3 with its CNI backend runs a busybox container on ipcni's bridge, host-local,
# portmap, firewall and tuning plugins (containers/examples/podman-ipcni.conflist), inside a
# throwaway host namespace: address and default route, gateway ping, a -p 8080:80 mapping
# from the host and from an outside namespace, hairpin, masquerade, and nothing of the
# container left after stop and rm. The work is containers/podman-e2e.sh; its exit code is
# passed through (77 with the reason when podman is not installed or cannot run here).
# scripts/deps.sh installs podman and busybox-static; this test never installs anything.
# Plugins: $IPCNI_BIN (run.sh sets it), else podman-e2e.sh builds and installs ipcni.
HERE=$(cd "$(dirname "$0")" && pwd)
PODMAN_E2E_INSTALL=0 exec bash "$HERE/../containers/podman-e2e.sh" --plugins ipcni
