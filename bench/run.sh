#!/usr/bin/env bash
# The benchmark (issue: logical clone speed). Installs the peers it compares with, builds reseed,
# and writes docs/benchmarks.md and docs/benchmarks.svg. Arguments go to bench/bench.ts
# (--size 2G, --runs 3, --parallel 4, --methods reseed,mysqldump,mydumper,ingest,mariabackup,
# --sections clone,verify,impact,channel,physical: the clone methods, verify against pt-table-checksum, the
# donor's latency under a sysbench load during a clone, throttle off and on, and the agents' data
# channel against tar | socat, and --method mariabackup against the hand-made pipeline).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in mydumper time percona-toolkit sysbench socat zstd lz4; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ "${#need[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash scripts/setup.sh
exec node --import tsx bench/bench.ts "$@"
