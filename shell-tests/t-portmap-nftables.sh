#!/bin/bash
# portmap with backend "nftables": see portmap-common.sh.
BACKEND=nftables
. "$(dirname "$0")/portmap-common.sh"
