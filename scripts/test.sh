#!/usr/bin/env bash
# The test command: set the machine up (scripts/setup.sh), then run every test, unit and
# end-to-end, against the real daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
