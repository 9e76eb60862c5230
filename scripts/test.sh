#!/usr/bin/env bash
# The test suite: static checks, then unit and integration tests against real MariaDB sandboxes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The TLS test makes its certificates with openssl (on Debian nearly always there already); the
# progress test watches the screen of a real terminal in tmux; the snapshot tests make btrfs
# filesystems (btrfs-progs) and ZFS pools (zfs-fuse) on image files.
missing=()
for pair in openssl:openssl tmux:tmux btrfs:btrfs-progs zfs:zfs-fuse; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
npm run --silent typecheck
npm run --silent lint
npm run --silent format:check
export RESEED_TEST_DIR="${RESEED_TEST_DIR:-$(mktemp -d /tmp/reseed-test.XXXXXX)}"
shopt -s globstar nullglob
node --import tsx --test --test-concurrency=2 test/**/*.test.ts
