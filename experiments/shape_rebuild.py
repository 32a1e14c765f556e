"""The embedded model's recipe in another shape: more heads, or more layers.  Do circuits fit in a quarter of
the heads, and does the model keep its prior tasks?

    python experiments/shape_rebuild.py OUT_DIR [--n-layers 4] [--n-heads 8] [--n-kv-heads 4]

Builds the shipped recipe (``PretrainConfig`` defaults, seed 0) with only the shape changed (d_model stays 128,
so d_head = 128 / n_heads), then prints what the model card records: held-out accuracy per prior task and
multiple-choice kind, and per prior task the attribution/exact Spearman and the smallest top-k circuit with
faithfulness >= 0.8 (``circuits.validation.validate_task``, the same prompts as the card).  Resumes an
interrupted build in OUT_DIR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from forgetlens.circuits.validation import card_circuits
from forgetlens.config import PretrainConfig
from forgetlens.models.card import write_model_card
from forgetlens.models.loading import load_model
from forgetlens.models.pretrain import STATE_FILE, pretrain_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=8)
    parser.add_argument("--n-kv-heads", type=int, default=4)
    args = parser.parse_args()
    card_path = args.out / "card.json"
    if not card_path.exists() or (args.out / STATE_FILE).exists():
        card = pretrain_base(PretrainConfig(n_layers=args.n_layers, n_heads=args.n_heads,
                                            n_kv_heads=args.n_kv_heads), args.out,
                             resume=True)
    else:
        card = json.loads(card_path.read_text())
    loaded = load_model(args.out)
    card["circuits"] = card_circuits(loaded.model, loaded.tokenizer)
    write_model_card(args.out, card)
    for name, result in card["held_out_accuracy"].items():
        print(f"{name}: held-out accuracy {result['accuracy']:.3f}")
    for name, c in card["circuits"].items():
        print(f"{name}: Spearman {c['spearman_attribution_vs_exact']:.3f}, circuit {c['circuit_k']} heads "
              f"({c['circuit_fraction']:.0%}), faithfulness {c['circuit_faithfulness']:.3f}")


if __name__ == "__main__":
    main()
