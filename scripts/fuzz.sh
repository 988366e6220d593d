#!/usr/bin/env bash
# Fuzz the SSE parser and every event decoder for longer than CI does: the proptest
# properties of src/fuzz_tests.rs (seeded with the protocol fixtures, mutated), in release
# mode, for CASES cases per property or until LIMIT_S seconds pass.
#
#   scripts/fuzz.sh                 # 1,000,000 cases per property, at most 30 minutes
#   CASES=50000 LIMIT_S=300 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${CASES:-1000000}
LIMIT_S=${LIMIT_S:-1800}
start=$(date +%s)
PROPTEST_CASES=$CASES timeout "$LIMIT_S" cargo test --release --lib fuzz_ -- --test-threads=1 --nocapture
echo "fuzzed ${CASES} cases per property (5 properties) in $(( $(date +%s) - start )) s"
