#!/usr/bin/env bash
# The test suite: static checks, then unit and integration tests against real MariaDB sandboxes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The TLS test makes its certificates with openssl (on Debian nearly always there already); the
# progress test watches the screen of a real terminal in tmux.
for tool in openssl tmux; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$tool" >/dev/null
  fi
done
npm run --silent typecheck
npm run --silent lint
npm run --silent format:check
export RESEED_TEST_DIR="${RESEED_TEST_DIR:-$(mktemp -d /tmp/reseed-test.XXXXXX)}"
shopt -s globstar nullglob
node --import tsx --test --test-concurrency=2 test/**/*.test.ts
