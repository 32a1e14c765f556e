"""DBM's base circuits against attribution's and against exact patching, per task, from a study's run directory.

    python experiments/dbm_vs_patching.py --run runs/smollm2-own-circuits \
        --out docs/results/smollm2-135m/dbm-vs-patching.json

For each task whose base circuits the study found by both methods (``own_circuits.methods: [dbm, attribution]``),
on the same discovery prompts:

* overlap of the two circuits (retention of DBM's circuit by attribution's, Jaccard);
* rank agreement over all heads (Spearman) of DBM's mask logits with |attribution score| and with the exact
  effect of patching each head alone at the last token on log p(corrupted answer) (DBM's own objective);
* each circuit's faithfulness under counterfactual and under mean ablation (every position of the other heads);
* DBM run again with another seed for its prompt batches (the same prompts): its retention of the first run's
  circuit, the optimiser's own spread (beside the split-half ceiling, which also varies the prompts).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from forgetlens.analysis.own_circuits import set_agreement
from forgetlens.artefacts import read_json, write_json
from forgetlens.circuits.circuit import FaithfulnessProbe
from forgetlens.circuits.dbm import LastTokenPatcher, target_logp
from forgetlens.circuits.discover import discover_on, task_splits
from forgetlens.config.loading import config_from_mapping
from forgetlens.config.options import StudyConfig
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import load_model
from forgetlens.tasks.registry import get_task


@torch.no_grad()
def exact_last_token_effects(model, layout, prompts) -> np.ndarray:
    """log p(corrupted answer) change when each head alone takes its corrupted value at the last token
    -> [layer, head]."""
    patcher = LastTokenPatcher(model, layout, prompts, "counterfactual")
    rows = torch.arange(len(prompts))
    clean = float(target_logp(patcher.logits(rows, None), prompts, rows, "flip").mean())
    out = np.zeros((layout.n_layers, layout.n_heads))
    for layer in range(layout.n_layers):
        for head in range(layout.n_heads):
            one = torch.zeros(layout.n_layers, layout.n_heads)
            one[layer, head] = 1.0
            out[layer, head] = float(target_logp(patcher.logits(rows, one), prompts, rows, "flip").mean()) - clean
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a study run directory with own circuits")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_study_config_of(args.run)
    base = load_model(cfg.model)
    layout = HeadLayout.of(base.model)
    out = {"run": str(args.run), "model": cfg.model, "tasks": {}}
    for task_dir in sorted((args.run / "own_circuits").iterdir()):
        task = task_dir.name
        dbm, attribution = (read_json(task_dir / f"base.{m}.json") for m in ("dbm", "attribution"))
        prompts, _ = task_splits(base.tokenizer, get_task(task), cfg.discovery.n_examples, cfg.discovery.seed)
        logits = np.asarray(dbm["dbm"]["mask_logits"]).ravel()
        exact = exact_last_token_effects(base.model, layout, prompts)
        faithfulness = {}
        for ablation in ("counterfactual", "mean"):
            probe = FaithfulnessProbe(base.model, layout, prompts, ablation, metric=cfg.discovery.metric)
            faithfulness[ablation] = {
                "dbm": probe.faithfulness([tuple(h) for h in dbm["heads"]]),
                "attribution": probe.faithfulness([tuple(h) for h in attribution["heads"]]),
            }
        other_seed = dataclasses.replace(
            cfg.discovery, method="dbm", dbm=dataclasses.replace(cfg.discovery.dbm, seed=1)
        )
        again = discover_on(base.model, layout, prompts, other_seed)
        row = {
            "k": {"dbm": dbm["k"], "attribution": attribution["k"]},
            "dbm_in_attribution": set_agreement(dbm["heads"], attribution["heads"]),
            "spearman_dbm_vs_attribution": float(spearmanr(logits, np.abs(attribution["scores"]).ravel()).statistic),
            "spearman_dbm_vs_exact_last_token": float(spearmanr(logits, exact.ravel()).statistic),
            "spearman_attribution_vs_exact_last_token": float(
                spearmanr(np.abs(attribution["scores"]).ravel(), np.abs(exact).ravel()).statistic
            ),
            "faithfulness": faithfulness,
            "dbm_other_seed": {"k": again.k, **set_agreement(dbm["heads"], again.heads)},
        }
        out["tasks"][task] = row
        print(task, json.dumps(row), flush=True)
    write_json(args.out, out)


def load_study_config_of(run: Path) -> StudyConfig:
    """The StudyConfig a run directory was started with (its study_config.json)."""
    stored = read_json(run / "study_config.json")["config"]
    return config_from_mapping(StudyConfig, stored, str(run / "study_config.json"))


if __name__ == "__main__":
    main()
