#!/usr/bin/env bash
# The test command: set the machine up (scripts/setup.sh), lint and type-check everything, then
# run every test tier: unit (no root, no daemon), root (mknod, mounts; no daemon) and end-to-end
# (the real daemon).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent lint
npm run --silent typecheck
npm test
