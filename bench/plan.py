"""`forgetlens plan`'s training-memory estimate against the measured peak, on small models of each architecture.

    python bench/plan.py [--steps 3]

For Qwen2 (GQA), Llama and GPT-2 models of about 20 M parameters (random weights, the embedded tokenizer),
each of SFT and RL trains ``--steps`` optimizer steps through forgetlens's own training code in a fresh child
process, on the CPU in fp32.  Measured: the child's peak resident memory while training (sampled from /proc
every 10 ms) minus its resident memory just before, after every import (so weights, gradients, optimizer,
activations, logits and generation all count; the interpreter and libraries do not).  The same run with a
1-layer, width-32 model gives the part that does not grow with the model (lazy imports inside the trainers,
datasets, bookkeeping), which is subtracted; the plan's estimates are differenced the same way, with the prompt
length measured on the training prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PAGE = resource.getpagesize()
SHAPE = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8)
SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def build(arch: str, where: Path, shape: dict) -> None:
    """A random model of ``arch`` and ``shape`` (SHAPE: about 20 M parameters) with the embedded tokenizer."""
    import torch
    from transformers import (
        AutoTokenizer,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from forgetlens.models.loading import EMBEDDED_DIR

    tokenizer = AutoTokenizer.from_pretrained(str(EMBEDDED_DIR))
    torch.manual_seed(0)
    v = len(tokenizer)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(
            Qwen2Config(
                vocab_size=v,
                num_key_value_heads=shape["num_attention_heads"] // 2,
                max_position_embeddings=256,
                **shape,
            )
        )
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=v, max_position_embeddings=256, **shape))
    else:
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=v,
                n_embd=shape["hidden_size"],
                n_layer=shape["num_hidden_layers"],
                n_head=shape["num_attention_heads"],
                n_inner=shape["intermediate_size"],
                n_positions=256,
                bos_token_id=0,
                eos_token_id=0,
            )
        )
    model.save_pretrained(where)
    tokenizer.save_pretrained(where)


def finetune_config(model_dir: str, method: str, steps: int):
    from forgetlens.config.options import FinetuneConfig, RLConfig

    return FinetuneConfig(
        method=method,
        model=model_dir,
        steps=steps,
        checkpoint_every=steps,
        prompts_per_step=8,
        threads=1,
        rl=RLConfig(num_generations=8),
    )


def child(model_dir: str, method: str, steps: int, out: str) -> None:
    """Train in this process and print the peak memory above the pre-training baseline as JSON."""
    os.environ["FORGETLENS_QUIET"] = "1"
    import trl  # noqa: F401  (imports before the baseline)

    from forgetlens.pipeline.finetune import train
    from forgetlens.training.trainers import build_rl_trainer, build_sft_trainer  # noqa: F401

    cfg = finetune_config(model_dir, method, steps)
    baseline, peak, running = rss(), [0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], rss())
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    train(cfg, Path(out), resume=False, log=lambda *a: None)
    running[0] = False
    thread.join()
    print(json.dumps({"measured": peak[0] - baseline}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("MODEL_DIR", "METHOD", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.steps, args.child[2])
        return

    from forgetlens.config.options import StudyConfig
    from forgetlens.pipeline.plan import Hardware, estimate, model_shape, prompt_length

    def peak(model_dir: Path, method: str, out: Path) -> int:
        run = subprocess.run(
            [sys.executable, __file__, "--steps", str(args.steps), "--child", str(model_dir), method, str(out)],
            capture_output=True,
            text=True,
            env={**os.environ, "FORGETLENS_QUIET": "1"},
        )
        if run.returncode:
            raise SystemExit(run.stderr)
        return json.loads(run.stdout.strip().splitlines()[-1])["measured"]

    def planned(model_dir: Path, method: str) -> float:
        ft = finetune_config(str(model_dir), method, args.steps)
        cfg = StudyConfig(model=str(model_dir), methods=[method], finetune=ft)
        tokens, _ = prompt_length(cfg)
        return next(
            p
            for p in estimate(cfg, model_shape(str(model_dir)), Hardware(1, 1000), None, tokens)
            if p.stage == f"finetune: {method}"
        ).total

    mib = 2**20
    print(
        f"{'model':<7}{'params':>8}{'method':>7}{'peak MiB':>10}{'fixed MiB':>10}{'measured':>10}{'plan':>8}"
        f"{'plan/measured':>15}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("qwen2", "llama", "gpt2"):
            big, small = Path(tmp) / arch, Path(tmp) / f"{arch}-small"
            build(arch, big, SHAPE)
            build(arch, small, SMALL)
            n_params = model_shape(str(big)).n_params
            for method in ("sft", "rl"):
                raw, fixed = peak(big, method, Path(tmp) / f"{arch}-{method}"), peak(small, method, Path(tmp) / "s")
                measured, plan = raw - fixed, planned(big, method) - planned(small, method)
                print(
                    f"{arch:<7}{n_params / 1e6:>7.1f}M{method:>7}{raw / mib:>10.1f}{fixed / mib:>10.1f}"
                    f"{measured / mib:>10.1f}{plan / mib:>8.1f}{plan / measured:>15.2f}"
                )
    print(
        "peak: above the pre-training baseline; fixed: the same run with a 1-layer, width-32 model (libraries'\n"
        "lazy imports, datasets, trainer state: memory that does not grow with the model); measured = peak - fixed;\n"
        "plan: the plan's estimate for the same difference. Goal: plan/measured within 0.5-2."
    )


if __name__ == "__main__":
    main()
