#!/usr/bin/env bash
# Make a fresh Debian machine ready for dflatten, idempotently: the packages it and its tests
# need, a Docker daemon with the overlay2 driver (started here if none answers), and the npm
# dependencies, built. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (dflatten mounts overlays and reads Docker's layer dirs)" >&2
  exit 1
fi

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker >/dev/null || need+=(docker.io)
command -v rsync >/dev/null || need+=(rsync)
command -v getfattr >/dev/null || need+=(attr)
[ -x /usr/bin/time ] || need+=(time)
[ -x /bin/busybox ] || need+=(busybox-static)
# The containerd-store tests make images as a pull leaves them (gzip layers) with skopeo.
command -v skopeo >/dev/null || need+=(skopeo)
command -v node >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup.sh: starting dockerd (overlay2, no networking); log in /var/log/dflatten-dockerd.log"
  # The daemon outlives this script: no fd of the caller (a flock lock) goes with it.
  nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
    </dev/null >/var/log/dflatten-dockerd.log 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "setup.sh: dockerd did not come up" >&2; tail -20 /var/log/dflatten-dockerd.log >&2; exit 1; }
fi
# The registry tests start real registries (docker-registry, skopeo, TLS, htpasswd).
bash scripts/registry-deps.sh

driver=$(docker info --format '{{.Driver}}')
[ "$driver" = overlay2 ] || echo "setup.sh: note: the daemon uses $driver, not overlay2" >&2

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
