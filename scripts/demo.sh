#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs `reseed demo` (two sandboxes, sample data,
# a clone, a verification, a summary). Extra arguments go to `reseed demo` (e.g. --size 1G).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bin/reseed demo "$@"
