"""Cost of head scoring relative to a plain forward pass, measured side by side in one run.

    python bench/attribution.py [--batch 64] [--repeats 15] [--task ioi] [--model embedded]
    python bench/attribution.py --shape Qwen/Qwen2.5-3B-Instruct --device cuda --dtype bfloat16 [--no-exact]

Prints the median wall time of: a plain forward pass (no grad) on the clean
prompts; attribution patching of all heads (one clean forward with an
activation-only graph, one corrupted forward, one backward); EAP-IG with 8
steps; exact activation patching of every head; and each as a ratio to the
plain forward.  Threads are fixed (default 1) so ratios are comparable.

``--shape NAME`` measures a model of a known architecture (``plan.KNOWN_CONFIGS``) with random weights, built
directly on ``--device``, prompted through the embedded tokenizer: the cost of scoring a real model's heads
before its weights are at hand (the scores themselves mean nothing).  On CUDA every timing synchronises.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from forgetlens.circuits.attribution import attribution_scores
from forgetlens.circuits.patching import exact_head_effects, run_metric
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import load_model
from forgetlens.tasks import encode_examples, get_task


def median_seconds(fn, repeats: int) -> float:
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed()  # warm-up
    return statistics.median(timed() for _ in range(repeats))


def random_model(shape: str, device: str, dtype: torch.dtype):
    """A randomly initialised model of a known architecture, built on ``device``, with the embedded tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from forgetlens.models.loading import EMBEDDED_DIR
    from forgetlens.pipeline.plan import KNOWN_CONFIGS

    known = dict(KNOWN_CONFIGS[shape])
    config = AutoConfig.for_model(known.pop("model_type"), **known)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval(), AutoTokenizer.from_pretrained(str(EMBEDDED_DIR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--task", default="ioi")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--no-exact", action="store_true", help="skip exact patching (one forward per head)")
    parser.add_argument("--shape", default=None, help="random weights of this known architecture instead of --model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    if args.shape:
        model, tokenizer = random_model(args.shape, args.device, dtype)
        args.model = f"{args.shape} (random weights)"
    else:
        loaded = load_model(args.model, device=args.device, dtype=dtype)
        model, tokenizer = loaded.model, loaded.tokenizer
    layout = HeadLayout.of(model)
    batch = encode_examples(tokenizer, get_task(args.task).examples(args.batch, 0), args.task).to(args.device)
    n = args.batch

    measurements = [
        ("forward (no grad)", lambda: run_metric(model, batch, "logit_diff"), args.repeats),
        (
            "attribution, all heads",
            lambda: attribution_scores(model, layout, batch, metric="logit_diff", batch_size=n),
            args.repeats,
        ),
        (
            "EAP-IG, 8 steps",
            lambda: attribution_scores(model, layout, batch, metric="logit_diff", ig_steps=8, batch_size=n),
            max(3, args.repeats // 3),
        ),
    ]
    if not args.no_exact:
        measurements.append(
            (
                "exact patching, all heads",
                lambda: exact_head_effects(model, layout, batch, metric="logit_diff", batch_size=n),
                max(3, args.repeats // 5),
            )
        )
    print(
        f"model={args.model} ({layout.n_layers}x{layout.n_heads} heads) task={args.task} batch={n} "
        f"threads={args.threads} device={args.device} dtype={args.dtype} torch={torch.__version__}"
    )
    print(f"{'what':<28}{'median ms':>12}{'x forward':>12}", flush=True)
    forward = None
    for name, fn, repeats in measurements:
        seconds = median_seconds(fn, repeats)
        forward = forward or seconds
        print(f"{name:<28}{seconds * 1000:>12.2f}{seconds / forward:>12.2f}", flush=True)
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name()}, peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
