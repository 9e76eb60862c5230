#!/usr/bin/env bash
# The test suite: static checks, then unit and integration tests against real MariaDB sandboxes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The TLS test makes its certificates with openssl (on Debian nearly always there already); the
# progress test watches the screen of a real terminal in tmux; the snapshot tests make btrfs
# filesystems (btrfs-progs) and ZFS pools (zfs-fuse) on image files; the two-host tests drop packets
# with nftables.
missing=()
for pair in openssl:openssl tmux:tmux btrfs:btrfs-progs zfs:zfs-fuse nft:nftables; do
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
# Whatever a test that failed hard left mounted under the test directory goes: ZFS pools, loop
# mounts, and a zfs-fuse daemon the tests started.
cleanup() {
  # The tests' exit status is the script's; nothing here may change it.
  local rc=$?
  set +e +o pipefail
  if command -v zpool >/dev/null 2>&1; then
    for pool in $(zpool list -H -o name 2>/dev/null | grep '^reseed_' || true); do
      if zfs get -H -o value mountpoint "$pool" 2>/dev/null | grep -q "^$RESEED_TEST_DIR/"; then
        for _ in 1 2 3 4 5 6 7 8 9 10; do zpool destroy -f "$pool" 2>/dev/null && break; sleep 1; done
      fi
    done
  fi
  grep " $RESEED_TEST_DIR/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" || true; done
  pidfile="$RESEED_TEST_DIR/sandboxes/.zfs-fuse.pid"
  if [ -f "$pidfile" ] && grep -q zfs-fuse "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null; then
    kill "$(cat "$pidfile")" || true
  fi
  exit "$rc"
}
trap cleanup EXIT
shopt -s globstar nullglob
node --import tsx --test --test-concurrency=2 test/**/*.test.ts
