#!/usr/bin/env bash
# Regenerate docs/report-screenshot.png from a study's report: scripts/screenshot.sh RUN_DIR
# Needs Debian's chromium (apt-get install chromium); the flags keep it off the network.
set -euo pipefail
run_dir=${1:?usage: scripts/screenshot.sh RUN_DIR}
out=${2:-docs/report-screenshot.png}
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=1200,5200 --screenshot="$out" "file://$(realpath "$run_dir")/report.html" 2>/dev/null
rm -rf "$profile"
echo "wrote $out"
