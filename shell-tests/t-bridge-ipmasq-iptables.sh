#!/bin/bash
# ipMasq with ipMasqBackend "iptables": see ipmasq-common.sh.
BACKEND=iptables
. "$(dirname "$0")/ipmasq-common.sh"
