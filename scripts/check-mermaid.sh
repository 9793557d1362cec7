#!/usr/bin/env bash
# Optional (not run by CI): checks that `zfsrepl graph` output parses with
# Mermaid's own parser (mermaid 10 under Node with jsdom, installed from npm
# into a temporary directory).
#
#   scripts/check-mermaid.sh [POLICY_DIR...]     default: every policies/*/
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null || { echo "node is needed (apt-get install nodejs npm)" >&2; exit 1; }
cargo build -q -p zfsrepl-cli
bin=${CARGO_TARGET_DIR:-target}/debug/zfsrepl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm install --silent --no-audit --no-fund mermaid@10 jsdom@24 >/dev/null)
cat > "$work/check.mjs" <<'JS'
import { JSDOM } from 'jsdom';
import fs from 'fs';
const dom = new JSDOM('<!DOCTYPE html><body></body>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');
for (const f of process.argv.slice(2)) {
  try { await mermaid.parse(fs.readFileSync(f, 'utf8')); console.log(`${f}: parses`); }
  catch (e) { console.log(`${f}: ${e.message || e}`); process.exitCode = 1; }
}
JS
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(policies/*/)
files=()
for d in "${dirs[@]}"; do
  f="$work/$(basename "$d").mmd"
  "$bin" graph "$d" > "$f"
  files+=("$f")
done
node "$work/check.mjs" "${files[@]}"
