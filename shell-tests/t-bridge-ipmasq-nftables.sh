#!/bin/bash
# ipMasq with ipMasqBackend "nftables": see ipmasq-common.sh.
BACKEND=nftables
. "$(dirname "$0")/ipmasq-common.sh"
