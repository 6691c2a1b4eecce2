#!/usr/bin/env bash
# Install, idempotently, what the registry tests start for real: Debian's docker-registry
# (distribution 2.8), skopeo (a registry client nobody here wrote), htpasswd (bcrypt users for
# basic auth) and openssl (a CA and a server certificate for TLS). Run as root.
set -euo pipefail

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "registry-deps.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The package starts a registry of its own on :5000 where systemd runs; the tests start theirs
# on free ports, so it does not matter, but it should not hold a port the user did not ask for.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
