"""First-order CMAP against exact patching of every head, on a base model and a fine-tuned one.

    python experiments/first_order_vs_exact.py --base smollm2-135m --tuned RUN_DIR/checkpoints/step-32 \
        [--tasks induction,ioi] [--n 32] [--top-m 8] [--threads 1] [--out FILE]
    python experiments/first_order_vs_exact.py --base embedded --noise 0.05,0.2,0.5,1,2 --total

``--noise`` compares on copies of the base whose attention weights get Gaussian noise of that size relative to
each weight matrix's mean |w| (one model per size): how the estimate degrades as the change grows.

Per task (default: the base model's default set), on ``--n`` evaluation prompts (seed 0, as a study draws them),
it measures head-local (and with ``--total`` total) CMAP of every head both ways
(``measure.cmap.cmap_and_drift`` with
``top_m=None`` keeps the exact values and the estimates side by side) and prints:

- Spearman between the per-head mean estimate and mean exact effect, with a 95 % prompt-bootstrap interval;
- recall@M: how many of the M heads of largest exact |effect| are among the M of largest estimated |effect|
  (the heads ``cmap_top_m`` would patch exactly);
- for the 5 heads of largest exact |effect|: exact, estimate and their ratio, which shows where the linear
  approximation over- or under-shoots.
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import torch

from forgetlens.circuits.discover import task_splits
from forgetlens.embedded_build.validation import spearman_over_heads
from forgetlens.errors import ForgetlensError
from forgetlens.measure.cmap import cmap_and_drift
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import load_model
from forgetlens.tasks import get_task
from forgetlens.tasks.registry import default_task_names
from forgetlens.training.checkpoints import load_checkpoint
from forgetlens.utils import atomic_write_text


def compare(exact: np.ndarray, estimate: np.ndarray, top_m: int) -> dict:
    """exact, estimate: [prompt, layer, head] per-prompt effects."""
    rho = spearman_over_heads(estimate, exact)
    mean_exact, mean_est = exact.mean(0).ravel(), estimate.mean(0).ravel()
    top_exact = set(np.argsort(-np.abs(mean_exact))[:top_m].tolist())
    top_est = set(np.argsort(-np.abs(mean_est))[:top_m].tolist())
    n_heads = exact.shape[2]
    largest = np.argsort(-np.abs(mean_exact))[:5]
    return {
        "spearman": list(rho),
        f"recall_at_{top_m}": len(top_exact & top_est) / top_m,
        "largest": [
            {
                "head": f"L{i // n_heads}H{i % n_heads}",
                "exact": float(mean_exact[i]),
                "estimate": float(mean_est[i]),
                "ratio": float(mean_est[i] / mean_exact[i]) if mean_exact[i] else None,
            }
            for i in largest
        ],
    }


def compare_on_task(base, tuned, layout: HeadLayout, name: str, n: int, top_m: int, total: bool) -> dict:
    """Exact and first-order CMAP (head-local; total too if ``total``) of every head on ``n`` evaluation prompts
    of task ``name``, compared."""
    _, evaluation = task_splits(base.tokenizer, get_task(name), n, 0)
    none = torch.zeros(layout.n_layers, layout.n_heads, dtype=torch.bool)
    fields = cmap_and_drift(base.model, tuned, layout, evaluation, none, total=total, top_m=None, metric="logit_diff")
    out = {"local": compare(fields["cmap"], fields["cmap_estimate"], top_m)}
    if total:
        out["total"] = compare(fields["cmap_total"], fields["cmap_total_estimate"], top_m)
    return out


def noisy(model, size: float):
    """A copy of ``model`` with Gaussian noise of ``size`` x mean |w| added to every attention weight."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in out.named_parameters():
            if "self_attn" in name:
                p.add_(size * p.abs().mean() * torch.randn(p.shape, generator=gen))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--tuned", default=None, help="a checkpoint directory (or model) fine-tuned from --base")
    parser.add_argument("--noise", default=None, help="comma-separated relative noise sizes instead of --tuned")
    parser.add_argument("--tasks", default=None)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--top-m", type=int, default=8)
    parser.add_argument(
        "--total", action="store_true", help="also compare total CMAP (doubles the cost: one more forward per head)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if (args.tuned is None) == (args.noise is None):
        parser.error("give exactly one of --tuned and --noise")
    try:
        base = load_model(args.base)
        tuned = (
            {args.tuned: load_checkpoint(args.tuned, args.base)}
            if args.tuned
            else {f"noise {size}": noisy(base.model, float(size)) for size in args.noise.split(",")}
        )
    except ForgetlensError as error:
        raise SystemExit(f"error: {error}") from None
    layout = HeadLayout.of(base.model)
    names = args.tasks.split(",") if args.tasks else default_task_names(args.base)
    result = {"base": args.base, "n": args.n, "models": {}}
    for label, model in tuned.items():
        result["models"][label] = {}
        for name in names:
            entry = compare_on_task(base, model, layout, name, args.n, args.top_m, args.total)
            result["models"][label][name] = entry
            for form in entry:
                e = entry[form]
                print(
                    f"{label:<12}{name:<18}{form:<6} Spearman {e['spearman'][0]:.3f} [{e['spearman'][1]:.3f}, "
                    f"{e['spearman'][2]:.3f}]  recall@{args.top_m} {e[f'recall_at_{args.top_m}']:.2f}  largest: "
                    + ", ".join(f"{h['head']} {h['exact']:+.3f}/{h['estimate']:+.3f}" for h in e["largest"]),
                    flush=True,
                )
            if args.out:
                atomic_write_text(args.out, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
