#!/bin/bash
# portmap with backend "iptables": see portmap-common.sh.
BACKEND=iptables
. "$(dirname "$0")/portmap-common.sh"
