"""Per-head attribution against exact patching on the embedded model, as the model card's Spearman is computed.

    python experiments/attribution_vs_exact.py [--task fact_recall] [--model embedded] [--float64]
        [--direction noising|denoising] [--metric logit_diff|prob_diff] [--ig-steps 0] [--n 512] [--seed 0]

Prints every head's mean exact noising effect and attribution estimate (512 discovery prompts, seed 0, as
``embedded_build.validation.validate_task``), sorted by |exact|, the Spearman correlation and the number of heads
whose signs disagree.  ``--float64`` repeats it in double precision, to tell approximation error from rounding.
The other options change the patching direction, the metric, the attribution (EAP-IG with ``--ig-steps``) and
the discovery prompts; the last line gives the exact effects' split-half Spearman (first against second half of
the prompts), how reliable the reference itself is.
"""

from __future__ import annotations

import argparse

import torch
from scipy.stats import spearmanr

from forgetlens.circuits.attribution import attribution_scores
from forgetlens.circuits.discover import task_splits
from forgetlens.circuits.patching import exact_head_effects
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import load_model
from forgetlens.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="fact_recall")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--direction", default="noising", choices=["noising", "denoising"])
    parser.add_argument("--metric", default="logit_diff", choices=["logit_diff", "prob_diff"])
    parser.add_argument("--ig-steps", type=int, default=0, help="EAP-IG midpoints (0: plain attribution)")
    parser.add_argument("--n", type=int, default=512, help="discovery prompts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    loaded = load_model(args.model)
    model = loaded.model.to(torch.float64) if args.float64 else loaded.model
    layout = HeadLayout.of(model)
    discovery, _ = task_splits(loaded.tokenizer, get_task(args.task), args.n, args.seed)
    options = dict(metric=args.metric, direction=args.direction, batch_size=64)
    attribution = (
        attribution_scores(model, layout, discovery, ig_steps=args.ig_steps, **options).mean(0).flatten()
    )  # [layer*head]
    per_prompt = exact_head_effects(model, layout, discovery, **options)  # [prompt, layer, head]
    exact = per_prompt.mean(0).flatten()  # [layer*head]
    print("layer head      exact  attribution")
    for i in exact.abs().argsort(descending=True).tolist():
        print(f"{i // layout.n_heads:5d} {i % layout.n_heads:4d} {exact[i]:10.4f} {attribution[i]:12.4f}")
    rho = spearmanr(attribution.numpy(), exact.numpy()).statistic
    pearson = float(torch.corrcoef(torch.stack([attribution, exact]))[0, 1])
    print(
        f"Spearman {rho:.3f}, Pearson {pearson:.3f}; "
        f"signs disagree on {int(((exact > 0) != (attribution > 0)).sum())} of {exact.numel()} heads"
    )
    half = per_prompt.shape[0] // 2
    split = spearmanr(per_prompt[:half].mean(0).flatten().numpy(), per_prompt[half:].mean(0).flatten().numpy())
    print(f"exact effects, split-half Spearman {split.statistic:.3f}")


if __name__ == "__main__":
    main()
