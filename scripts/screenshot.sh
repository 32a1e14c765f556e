#!/usr/bin/env bash
# The top of a study's report as a reader sees it, at a desktop's and a laptop's width:
#   scripts/screenshot.sh RUN_DIR [OUT_DIR]   ->  OUT_DIR/report-1400.png, OUT_DIR/report-1280.png (default docs/)
# Needs Debian's chromium (apt-get install chromium); the flags keep it off the network.
set -euo pipefail
run_dir=${1:?usage: scripts/screenshot.sh RUN_DIR [OUT_DIR]}
out_dir=${2:-docs}
for width in 1400 1280; do
  profile=$(mktemp -d)
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
    --window-size="$width,1500" --screenshot="$out_dir/report-$width.png" \
    "file://$(realpath "$run_dir")/report.html" 2>/dev/null
  rm -rf "$profile"
  echo "wrote $out_dir/report-$width.png"
done
