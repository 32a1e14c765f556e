"""Cost of head scoring relative to a plain forward pass, measured side by side in one run.

    python bench/attribution.py [--batch 64] [--repeats 15] [--task ioi] [--model embedded]

Prints the median wall time of: a plain forward pass (no grad) on the clean
prompts; attribution patching of all heads (one clean forward with an
activation-only graph, one corrupted forward, one backward); EAP-IG with 8
steps; exact activation patching of every head; and each as a ratio to the
plain forward.  Threads are fixed (default 1) so ratios are comparable.
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
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--task", default="ioi")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    model, layout = loaded.model, HeadLayout.of(loaded.model)
    batch = encode_examples(loaded.tokenizer, get_task(args.task).examples(args.batch, 0), args.task)
    n = args.batch

    rows = [
        ("forward (no grad)", median_seconds(lambda: run_metric(model, batch, "logit_diff"), args.repeats)),
        ("attribution, all heads", median_seconds(lambda: attribution_scores(model, layout, batch, batch_size=n),
                                                  args.repeats)),
        ("EAP-IG, 8 steps", median_seconds(lambda: attribution_scores(model, layout, batch, ig_steps=8,
                                                                      batch_size=n), max(3, args.repeats // 3))),
        ("exact patching, all heads", median_seconds(lambda: exact_head_effects(model, layout, batch, batch_size=n),
                                                     max(3, args.repeats // 5))),
    ]
    forward = rows[0][1]
    print(f"model={args.model} ({layout.n_layers}x{layout.n_heads} heads) task={args.task} batch={n} "
          f"threads={args.threads} torch={torch.__version__}")
    print(f"{'what':<28}{'median ms':>12}{'x forward':>12}")
    for name, seconds in rows:
        print(f"{name:<28}{seconds * 1000:>12.2f}{seconds / forward:>12.2f}")


if __name__ == "__main__":
    main()
