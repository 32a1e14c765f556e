"""``forgetlens audit``: base circuits and their vulnerability in any tuned models.

Tuned models may be full model directories, PEFT LoRA adapter directories (merged onto the base), or
``forgetlens finetune`` run directories, which expand to one model per checkpoint (``NAME@STEP``).
Models named ``sft<REST>`` and ``rl<REST>`` are compared by DCV (``metrics/compare.py``); run directories
with behaviour tables add matched-accuracy and matched-KL comparisons (``metrics/matched.py``); names
with a ``-s<SEED>`` part are averaged over seeds (``metrics/seeds.py``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from forgetlens.circuits.circuit import head_mask
from forgetlens.circuits.discover import discover_circuit, task_splits
from forgetlens.config import DiscoveryConfig
from forgetlens.errors import ForgetlensError
from forgetlens.metrics.compare import compare_models
from forgetlens.metrics.matched import matched_models
from forgetlens.metrics.seeds import aggregate_seeds
from forgetlens.metrics.stats import bootstrap_indices
from forgetlens.metrics.vulnerability import circuit_weights, measure
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import load_model, resolve_model_path
from forgetlens.tasks.base import PriorTask
from forgetlens.training.checkpoints import checkpoint_dirs, load_checkpoint
from forgetlens.utils import progress, versions


def parse_tuned(specs: list[str]) -> dict[str, str]:
    """``NAME=PATH`` strings -> {name: path}, with one-line errors for malformed ones."""
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ForgetlensError(f"--tuned {spec!r}: expected NAME=PATH")
        if name in out:
            raise ForgetlensError(f"--tuned: the name {name!r} is used twice")
        out[name] = path
    return out


def expand_tuned(tuned: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{label: (kind, path)}; run directories become one entry per checkpoint (step 0 excluded)."""
    out = {}
    for name, path in tuned.items():
        p = Path(path)
        ckpts = checkpoint_dirs(p) if p.is_dir() else []
        if ckpts:
            for step, d in ckpts:
                if step > 0:
                    out[f"{name}@{step}"] = ("checkpoint", str(d))
        else:
            resolve_model_path(path)
            out[name] = ("model", path)
    return out


def run_behaviour(tuned: dict[str, str]) -> dict[str, dict[int, dict]]:
    """{name: {step: behaviour row}} for every run directory among ``tuned`` that has a behaviour.json."""
    out = {}
    for name, path in tuned.items():
        table = Path(path) / "behaviour.json"
        if table.is_file():
            rows = json.loads(table.read_text())["checkpoints"]
            out[name] = {int(r["step"]): {"target_accuracy": r["target_accuracy"], "kl_forward": r["kl_forward"]}
                         for r in rows}
    return out


def _load_tuned(kind: str, path: str, base_spec: str):
    if kind == "checkpoint" or (Path(path) / "adapter_config.json").exists():
        return load_checkpoint(Path(path), base_spec)
    return load_model(path).model


def circuit_stability(per_prompt: torch.Tensor, heads: list[tuple[int, int]], n_boot: int, seed: int) -> dict:
    """Jaccard of C0 with the top-|C0| heads re-selected on bootstrap resamples of the discovery prompts."""
    scores = per_prompt.double().numpy()  # [n, L, H]
    k, n_heads = len(heads), scores.shape[2]
    base = {l * n_heads + h for l, h in heads}
    values = []
    for idx in bootstrap_indices(scores.shape[0], n_boot, seed + 17):
        mean = np.abs(scores[idx].mean(0)).ravel()
        top = set(np.argsort(-mean, kind="stable")[:k].tolist())
        values.append(len(top & base) / len(top | base))
    values = np.array(values)
    return {"mean_jaccard": float(values.mean()), "ci_low": float(np.percentile(values, 2.5)),
            "ci_high": float(np.percentile(values, 97.5)), "n_boot": n_boot}


def audit(base_spec: str, tuned: dict[str, str], tasks: list[PriorTask], k: int | None = None, n_boot: int = 1000,
          seed: int = 0, n_examples: int = 128, method: str = "attribution") -> dict:
    """Discover each task's base circuit and measure every tuned model against it."""
    start = time.perf_counter()
    base = load_model(base_spec)
    layout = HeadLayout.of(base.model)
    entries = expand_tuned(tuned)
    behaviour = run_behaviour(tuned)
    models = {}
    for label, (kind, path) in entries.items():
        model = _load_tuned(kind, path, base_spec)
        layout.check_compatible(HeadLayout.of(model), f"tuned model {label} ({path})")
        models[label] = model
    timings = {"discovery": 0.0, "metrics": 0.0}
    results = {}
    for task in progress(tasks, desc="audit"):
        t0 = time.perf_counter()
        cfg = DiscoveryConfig(method=method, k=k, n_examples=n_examples, seed=seed)
        circuit = discover_circuit(base.model, base.tokenizer, task, cfg)
        _, evaluation = task_splits(base.tokenizer, task, n_examples, seed)
        timings["discovery"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        mask = head_mask(circuit.heads, layout)
        base_m = measure(base.model, layout, evaluation, mask, method)
        tuned_m = {label: measure(m, layout, evaluation, mask, method, base=base.model) for label, m in models.items()}
        matched, levels = matched_models(base_m, tuned_m, behaviour)
        weights = circuit_weights(circuit.scores.double().numpy(), mask.numpy())
        comparison = compare_models(base_m, {**tuned_m, **matched}, mask.numpy(), weights, n_boot, seed)
        timings["metrics"] += time.perf_counter() - t0
        results[task.name] = {
            "circuit": {"heads": [list(h) for h in circuit.heads], "k": circuit.k,
                        "faithfulness": circuit.faithfulness},
            "circuit_stability": circuit_stability(circuit.per_prompt, circuit.heads, min(n_boot, 200), seed),
            "base_scores": circuit.scores.tolist(),
            **comparison,
            "matched_levels": levels,
            "seeds": {"models": aggregate_seeds(comparison["models"]),
                      "dcv": aggregate_seeds({f"dcv{pair}": s for pair, s in comparison["dcv"].items()})},
        }
    return {
        "schema": "forgetlens.audit/1",
        "base": base_spec,
        "tuned": {label: path for label, (_, path) in entries.items()},
        "behaviour": {name: {str(step): row for step, row in rows.items()} for name, rows in behaviour.items()},
        "layout": dataclasses.asdict(layout),
        "config": {"tasks": [t.name for t in tasks], "k": k, "n_boot": n_boot, "seed": seed,
                   "n_examples": n_examples, "method": method},
        "tasks": results,
        "timings": {**{k2: round(v, 2) for k2, v in timings.items()},
                    "total": round(time.perf_counter() - start, 2)},
        "versions": versions(),
    }


def per_head_csv(result: dict) -> str:
    """One row per (task, model, head): base importance, V_imp, V_cmap (local, total), drift with CIs, circuit flag."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["task", "model", "layer", "head", "in_circuit", "ie_base", "v_imp", "v_imp_low", "v_imp_high",
                "v_cmap", "v_cmap_low", "v_cmap_high", "v_cmap_total", "v_cmap_total_low", "v_cmap_total_high",
                "drift", "drift_low", "drift_high"])
    for task, r in result["tasks"].items():
        members = {tuple(h) for h in r["circuit"]["heads"]}
        dcv_rows = [(f"dcv{pair}", stats) for pair, stats in r.get("dcv", {}).items()]
        for model, stats in list(r["models"].items()) + dcv_rows:
            ie = stats.get("ie_base", r["models"][next(iter(r["models"]))]["ie_base"])["value"]
            for layer, row in enumerate(ie):
                for head in range(len(row)):
                    vals = []
                    for key in ("v_imp", "v_cmap", "v_cmap_total", "drift"):
                        s = stats[key]
                        vals += [s["value"][layer][head], s["ci_low"][layer][head], s["ci_high"][layer][head]]
                    w.writerow([task, model, layer, head, int((layer, head) in members), ie[layer][head], *vals])
    return buf.getvalue()
