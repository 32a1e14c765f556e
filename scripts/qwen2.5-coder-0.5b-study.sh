#!/usr/bin/env bash
# The Qwen2.5-Coder-0.5B-Instruct study in full, where there is the time for it (a GPU, or a CPU machine for a day):
#   scripts/qwen2.5-coder-0.5b-study.sh sweep [OUT]   # 1. learning rates by the rule, on seed 100 (6 runs)
#   scripts/qwen2.5-coder-0.5b-study.sh study [OUT]   # 2. after setting lr_sft / lr_rl in the config to the
#                                                     #    sweep's choice: 3 seeds, then the tables
# OUT defaults to runs/qwen2.5-coder-0.5b. JOBS (default 1) runs that many fine-tuning runs side by side: each
# needs 10.4 GiB (SFT) or 11.6 GiB (RL) by `forgetlens plan`, so 1 on a 24 GiB machine. GPUS (default 1x80) is
# the hardware `forgetlens plan` prints the budget for first. Measured cost of one seed on 2 CPU cores:
# docs/results/qwen2.5-coder-0.5b/study.md.
set -euo pipefail
stage=${1:?usage: scripts/qwen2.5-coder-0.5b-study.sh sweep|study [OUT]}
out=${2:-runs/qwen2.5-coder-0.5b}
config=configs/qwen2.5-coder-0.5b-study.yaml
jobs=${JOBS:-1}
forgetlens plan --config "$config" --gpus "${GPUS:-1x80}"
case "$stage" in
  sweep)
    forgetlens sweep --config "$config" --out "$out-sweep" --lrs 1e-5,3e-5,1e-4 --seed 100 --jobs "$jobs"
    echo "now set finetune.lr_sft and finetune.lr_rl in $config to the rates chosen above, then run: $0 study $out"
    ;;
  study)
    python bench/study.py --config "$config" --seeds 0,1,2 --jobs "$jobs" --out "$out" --log "$out.log"
    forgetlens report "$out" --markdown
    ;;
  *)
    echo "error: the stage must be sweep or study, got '$stage'" >&2
    exit 2
    ;;
esac
