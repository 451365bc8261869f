#!/usr/bin/env bash
# Start a Docker engine with no network plumbing (containers use network_mode=none) if none runs.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "dockerd not found: apt-get install docker.io" >&2
  exit 1
fi
mkdir -p /var/log
nohup dockerd --bridge=none --iptables=false --ip-masq=false >/var/log/tidewater-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "dockerd did not come up; see /var/log/tidewater-dockerd.log" >&2
exit 1
