#!/usr/bin/env bash
# The test command (README): format, lints, every test tier, docs.
# Real-pool tests need root and ZFS (scripts/setup-zfs.sh); they never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "tests (unit, model, real pools, ssh, CLI)"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --locked --no-fail-fast
  real=$(cargo nextest list --workspace --all-features --locked --message-format oneline \
    -E 'binary(/_real$/)' 2>/dev/null | grep -c . || true)
  echo "real-pool tests run (every binary named *_real): $real, none skipped"
else
  cargo test --workspace --all-features --locked
fi
cargo test --workspace --all-features --locked --doc

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

echo
echo "all checks passed"
