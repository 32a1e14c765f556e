"""What kind of circuits a model's card records: their layers, their size under each ablation, and whether the
circuit heads act at the answer position only.

    python experiments/inspect_circuits.py MODEL_DIR [--n 256] [--seed 0] [--threads 1]

For every default prior task, on ``--n`` discovery prompts (``DiscoveryConfig`` defaults otherwise):

- the smallest attribution-ranked circuit with faithfulness >= 0.8 under counterfactual, mean and zero ablation
  (k, f, heads), as ``forgetlens discover --ablation`` finds it;
- the share of the summed |exact noising effect| that each layer's heads carry;
- for the counterfactual circuit C: faithfulness when C's heads keep their clean output at every position
  (the usual f) and when they keep it at the answer position only, every other position of C's heads taking
  the corrupted value.  Equal values mean C acts only where the answer is read out.

The model is left as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from forgetlens.circuits.circuit import faithfulness_baseline, normalised_faithfulness
from forgetlens.circuits.discover import discover_circuit, task_splits
from forgetlens.circuits.patching import chunks, exact_head_effects, head_outputs, run_with_patch
from forgetlens.config.options import DiscoveryConfig
from forgetlens.errors import ForgetlensError
from forgetlens.models.forward import model_device
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import load_model
from forgetlens.tasks.registry import parse_task_list


@torch.no_grad()
def answer_position_faithfulness(
    model, layout: HeadLayout, batch, heads: list[tuple[int, int]], metric: str, batch_size: int = 64
) -> float:
    """Faithfulness of ``heads`` when they keep their clean output only at each prompt's answer position."""
    every = torch.ones(layout.n_layers, layout.n_heads, dtype=torch.bool)  # [layer, head]: all take ``source``
    out = []
    for part in chunks(batch, batch_size, model_device(model)):
        clean = head_outputs(model, layout, part)  # [layer, batch, pos, head, d_head]
        source = head_outputs(model, layout, part, corrupted=True)
        rows = torch.arange(len(part))
        for layer, head in heads:
            source[layer, rows, part.answer_pos, head] = clean[layer, rows, part.answer_pos, head]
        out.append(run_with_patch(model, layout, part, every, source, metric).cpu())
    base = faithfulness_baseline(model, layout, batch, "counterfactual", metric, batch_size)
    return normalised_faithfulness(torch.cat(out), base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--n", type=int, default=256, help="discovery prompts per task")
    parser.add_argument("--seed", type=int, default=0, help="prompt seed")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        loaded = load_model(args.model)
    except ForgetlensError as error:
        raise SystemExit(f"error: {error}") from None
    model, tokenizer = loaded.model, loaded.tokenizer
    layout = HeadLayout.of(model)
    base_cfg = DiscoveryConfig(n_examples=args.n, seed=args.seed)
    for task in parse_task_list(None):
        print(f"== {task.name}")
        circuits = {}
        for ablation in ("counterfactual", "mean", "zero"):
            circuit = discover_circuit(model, tokenizer, task, dataclasses.replace(base_cfg, ablation=ablation))
            circuits[ablation] = circuit
            heads = " ".join(f"L{layer}H{head}" for layer, head in circuit.heads)
            print(f"  {ablation:>14} ablation: k={len(circuit.heads):>2} f={circuit.faithfulness:.3f}  {heads}")
        discovery, _ = task_splits(tokenizer, task, args.n, args.seed)
        effects = exact_head_effects(model, layout, discovery, metric=base_cfg.metric).mean(0).abs()  # [layer, head]
        shares = effects.sum(1) / effects.sum()
        print("  share of |exact effect| by layer: " + ", ".join(f"L{i} {s:.2f}" for i, s in enumerate(shares)))
        heads = circuits["counterfactual"].heads
        at_answer = answer_position_faithfulness(model, layout, discovery, heads, base_cfg.metric)
        print(
            f"  counterfactual circuit, clean at every position: f={circuits['counterfactual'].faithfulness:.3f}; "
            f"at the answer position only: f={at_answer:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
