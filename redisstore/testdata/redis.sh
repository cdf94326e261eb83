#!/usr/bin/env bash
# Installs the Debian package redis-server when redis-server is missing, so
# that the redisstore tests can start a throwaway server of their own
# (TestMain: a free loopback port, a temporary folder, stopped by its pid when
# the tests end). Messages go to stderr.
#
#   bash redisstore/testdata/redis.sh
set -euo pipefail

log() { echo "redis.sh: $*" >&2; }

if command -v redis-server >/dev/null; then
	log "$(redis-server --version | awk '{print $1, $2, $3}')"
	exit 0
fi
log "redis-server not found; installing the Debian package"
if [[ $(id -u) != 0 ]]; then
	log "need root to run apt-get; install redis-server yourself"
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update >&2
apt-get install -y --no-install-recommends redis-server >&2
log "installed $(redis-server --version | awk '{print $3}')"
