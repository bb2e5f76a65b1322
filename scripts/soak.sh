#!/usr/bin/env bash
# The soak: `portolan serve` (a release build) under a mixed workload of reads, searches, writes,
# action runs and event streams for MINUTES (default 30) at RATE requests/s (default 200). Every
# minute it prints each kind's latency percentiles, errors, runs delivered, and the server's memory
# and open files; it fails on an error, a lost delivery, or memory or open files that keep growing.
# Further arguments go to `portolan-soak` (e.g. --database-url postgres://.../empty_database).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
rate="${2:-200}"
shift $(( $# < 2 ? $# : 2 ))
cargo build --release -p portolan --bin portolan --bin portolan-soak
exec target/release/portolan-soak --minutes "$minutes" --rate "$rate" "$@"
