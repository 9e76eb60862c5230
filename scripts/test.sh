#!/usr/bin/env bash
# The test suite: static checks, then unit and integration tests against real MariaDB sandboxes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent typecheck
npm run --silent lint
npm run --silent format:check
export RESEED_TEST_DIR="${RESEED_TEST_DIR:-$(mktemp -d /tmp/reseed-test.XXXXXX)}"
shopt -s globstar nullglob
node --import tsx --test --test-concurrency=2 test/**/*.test.ts
