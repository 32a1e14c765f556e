"""``forgetlens audit``: base circuits and their vulnerability in any tuned models.

Tuned models may be full model directories, PEFT LoRA adapter directories (merged onto the base), or
``forgetlens finetune`` run directories, which expand to one model per checkpoint (``NAME@STEP``).
The models a declared comparison pairs (``AuditConfig.compare``, ``sft:rl`` by default: ``sft<REST>`` with
``rl<REST>``) are compared by DCV (``analysis/compare.py``); run directories
with behaviour tables add matched-accuracy and matched-KL comparisons (``analysis/matched.py``); names
with a ``-s<SEED>`` part are averaged over seeds (``analysis/seeds.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from forgetlens.analysis.anatomy import summarise_anatomy
from forgetlens.analysis.compare import compare_models, paired_behaviour_tests
from forgetlens.analysis.matched import matched_models
from forgetlens.analysis.own_circuits import summarise_method
from forgetlens.analysis.runs import checkpoint_label
from forgetlens.analysis.seeds import aggregate_seeds
from forgetlens.analysis.stats import bootstrap_indices
from forgetlens.analysis.vulnerability import PromptMeasurements
from forgetlens.artefacts import read_json, record_field
from forgetlens.circuits.discover import task_splits
from forgetlens.config.methods import Comparison
from forgetlens.config.options import AuditConfig, DiscoveryConfig, DiscoveryMethod, OwnCircuitsConfig
from forgetlens.errors import ForgetlensError
from forgetlens.measure.anatomy import measure_anatomy
from forgetlens.measure.base_circuit import BaseCircuit, find_base_circuit
from forgetlens.measure.behaviour import task_accuracy
from forgetlens.measure.circuit_damage import circuit_measurements
from forgetlens.measure.first_order_cmap import base_chunks
from forgetlens.measure.own_circuits import HALVES, heads_to_test, own_circuit_record, prompt_part
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import LoadedModel, is_embedded, load_model, model_record, resolve_model_path
from forgetlens.progress import open_task
from forgetlens.tasks.base import PriorTask
from forgetlens.tasks.registry import parse_task_list
from forgetlens.training.checkpoints import checkpoint_dirs, load_checkpoint
from forgetlens.utils import first_line, versions

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


def parse_tuned(specs: list[str]) -> dict[str, str]:
    """``NAME=PATH`` strings -> {name: path}, with one-line errors for malformed ones."""
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ForgetlensError(f"--tuned {spec!r}: expected NAME=PATH")
        if name in out:
            raise ForgetlensError(f"--tuned: the name {name!r} is used twice")
        if name == "base":
            raise ForgetlensError("--tuned: the name 'base' stands for the base model; call the tuned model otherwise")
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
                    out[checkpoint_label(name, step)] = ("checkpoint", str(d))
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
            rows = record_field(read_json(table), "checkpoints", table, list)
            try:
                out[name] = {
                    int(r["step"]): {
                        "target_accuracy": float(r["target_accuracy"]),
                        "kl_forward": float(r["kl_forward"]),
                    }
                    for r in rows
                }
            except (KeyError, TypeError, ValueError) as exc:
                raise ForgetlensError(
                    f"{table}: a checkpoint row lacks a numeric step, target_accuracy or kl_forward ({first_line(exc)})"
                ) from None
    return out


def _load_tuned(kind: str, path: str, base_spec: str):
    if kind == "checkpoint" or (Path(path) / "adapter_config.json").exists():
        return load_checkpoint(Path(path), base_spec)
    return load_model(path).model


def circuit_stability(per_prompt: torch.Tensor, heads: list[tuple[int, int]], n_boot: int, seed: int) -> dict:
    """Jaccard of C0 with the top-|C0| heads re-selected on bootstrap resamples of the discovery prompts
    (``per_prompt``: [prompt, layer, head] head effects)."""
    scores = per_prompt.double().numpy()  # [n, L, H]
    k, n_heads = len(heads), scores.shape[2]
    base = {l * n_heads + h for l, h in heads}
    values = []
    for idx in bootstrap_indices(scores.shape[0], n_boot, seed + 17):
        mean = np.abs(scores[idx].mean(0)).ravel()
        top = set(np.argsort(-mean, kind="stable")[:k].tolist())
        values.append(len(top & base) / len(top | base))
    jaccards = np.array(values)
    return {
        "mean_jaccard": float(jaccards.mean()),
        "ci_low": float(np.percentile(jaccards, 2.5)),
        "ci_high": float(np.percentile(jaccards, 97.5)),
        "n_boot": n_boot,
    }


NO_STABILITY = {"mean_jaccard": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_boot": 0}
"""A DBM circuit's stability: not a bootstrap over prompts (its masks are not per-prompt scores); the split-half
ceiling of ``own_circuits`` measures it instead."""


def analyse_task(
    bc: BaseCircuit,
    tuned: dict[str, PromptMeasurements],
    behaviour: dict[str, dict[int, dict]],
    n_boot: int,
    seed: int,
    comparisons: Sequence[Comparison],
) -> dict:
    """Circuit, stability, per-model statistics, DCV of the pairs ``comparisons`` declare (equal steps and
    matched levels) and seed means."""
    matched, levels = matched_models(bc.measurements, tuned, behaviour, comparisons=comparisons)
    models = {**tuned, **matched}
    comparison = compare_models(
        bc.measurements, models, bc.mask.numpy(), bc.weights, n_boot, seed, comparisons=comparisons
    )
    c = bc.circuit
    return {
        "circuit": {"heads": [list(h) for h in c.heads], "k": c.k, "faithfulness": c.faithfulness},
        "circuit_stability": (
            circuit_stability(c.per_prompt, c.heads, min(n_boot, 200), seed) if c.method != "dbm" else NO_STABILITY
        ),
        "base_scores": c.scores.tolist(),
        **comparison,
        "matched_levels": levels,
        "seeds": {
            "models": aggregate_seeds(comparison["models"]),
            "dcv": aggregate_seeds({f"dcv{pair}": s for pair, s in comparison["dcv"].items()}),
        },
    }


def own_circuits_of_task(
    base: LoadedModel,
    models: dict[str, PreTrainedModel],
    layout: HeadLayout,
    task: PriorTask,
    discovery: DiscoveryConfig,
    methods: Sequence[DiscoveryMethod],
) -> dict:
    """{method: ``analysis.own_circuits.summarise_method``}: the base's own circuit of ``task`` on the discovery
    prompts and on each half of them, and every tuned model's, each found by ``method`` (every other option
    ``discovery``'s), compared as a study compares them (``OwnCircuitsConfig``'s null, margin and head tests)."""
    own = OwnCircuitsConfig()
    prompts, _ = task_splits(base.tokenizer, task, discovery.n_examples, discovery.seed)
    out = {}
    for method in methods:
        records: dict[str, dict] = {}
        for part in ("all", *HALVES):
            label = "base" if part == "all" else f"base.{part}"
            tested, test_own = heads_to_test(method, part, True, own.necessity, list)
            with open_task(f"audit {task.name}: {method} circuit of {label}", 1, "circuit") as shown:
                records[label] = own_circuit_record(
                    base.model, layout, prompt_part(prompts, part), discovery, method, tested, test_own
                )
                shown.advance()
        tested, _ = heads_to_test(method, "all", False, own.necessity, records["base"]["heads"].copy)
        for label, model in models.items():
            with open_task(f"audit {task.name}: {method} circuit of {label}", 1, "circuit") as shown:
                records[label] = own_circuit_record(model, layout, prompts, discovery, method, tested)
                shown.advance()
        out[method] = summarise_method(records, layout.n_total, own.n_null, own.delta, discovery.seed)
    return out


AUDIT_EXAMPLES = {"embedded": 128, "real": 32}
"""Prompts per split when ``audit`` is not told: the embedded model's forward passes are cheap; a real model's
(SmolLM2's 270 heads, one CPU core) are about a hundred times dearer, so it gets a quarter of them, which keeps
the README's audit of the main job's two runs to a few minutes (BENCHMARKS.md)."""


def default_examples(base_spec: str) -> int:
    """:data:`AUDIT_EXAMPLES` for ``base_spec``."""
    return AUDIT_EXAMPLES["embedded" if is_embedded(base_spec) else "real"]


def audit(cfg: AuditConfig) -> dict:
    """Discover each task's base circuit and measure every tuned model against it (exact CMAP for C0 and the
    ``cfg.top_m`` other heads of largest first-order estimate, or every head with ``cfg.exact_everywhere``).
    ``cfg.anatomy``: also where each tuned model's change on the task lives (``measure/anatomy.py``), on the same
    evaluation prompts, as ``tasks[TASK].anatomy[LABEL]``.  ``cfg.n_examples`` None: :func:`default_examples` for
    the base model."""
    base_spec, tuned, tasks = cfg.base, parse_tuned(cfg.tuned), parse_task_list(cfg.tasks, model=cfg.base)
    k, n_boot, seed, method, anatomy = cfg.k, cfg.n_boot, cfg.seed, cfg.method, cfg.anatomy
    top_m = None if cfg.exact_everywhere else cfg.top_m
    start = time.perf_counter()
    n_examples = cfg.n_examples or default_examples(base_spec)
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
    discovery = DiscoveryConfig(method=method, k=k, n_examples=n_examples, seed=seed)
    whole = open_task(f"audit: {len(tasks)} task(s) x {len(models)} model(s)", len(tasks), "tasks")
    with whole:  # a whole-job time left from the tasks done: rough, tasks differ (1.5-11 min on SmolLM2)
        for task in tasks:  # each stage and each model its own piece of work: a line per finished one in a log
            t0 = time.perf_counter()
            with open_task(f"audit {task.name}: base circuit", 1, "circuit") as shown:
                bc = find_base_circuit(base, layout, task, discovery)
                shown.advance()
            timings["discovery"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            cache = base_chunks(base.model, layout, bc.evaluation, metric=bc.circuit.metric)
            tuned_m = {}
            for label, m in models.items():
                with open_task(f"audit {task.name}: circuit damage in {label}", 1, "model") as shown:
                    tuned_m[label] = circuit_measurements(
                        m,
                        layout,
                        bc.evaluation,
                        bc.mask,
                        method,
                        base=base.model,
                        metric=bc.circuit.metric,
                        top_m=top_m,
                        base_cache=cache,
                    )
                    shown.advance()
            results[task.name] = analyse_task(bc, tuned_m, behaviour, n_boot, seed, cfg.compared)
            on_prompts = {  # top-1 and log p(answer) per evaluation prompt: the paired tests of behaviour
                label: task_accuracy(m, bc.evaluation, per_prompt=True)["per_prompt"]
                for label, m in {"base": base.model, **models}.items()
            }
            results[task.name]["paired_tests"] = paired_behaviour_tests(
                on_prompts, n_boot, seed, comparisons=cfg.compared
            )
            timings["metrics"] += time.perf_counter() - t0
            if anatomy:
                t0 = time.perf_counter()
                results[task.name]["anatomy"] = {}
                for label, m in models.items():
                    with open_task(f"audit {task.name}: anatomy of {label}", 1, "model") as shown:
                        measured = measure_anatomy(
                            base.model, m, base.tokenizer, layout, bc.evaluation, bc.mask, metric=cfg.anatomy_metric
                        )
                        results[task.name]["anatomy"][label] = summarise_anatomy(
                            measured, bc.circuit.heads, n_boot, seed
                        )
                        shown.advance()
                timings["anatomy"] = timings.get("anatomy", 0.0) + time.perf_counter() - t0
            if cfg.own_circuits:
                t0 = time.perf_counter()
                results[task.name]["own_circuits"] = own_circuits_of_task(
                    base, models, layout, task, discovery, cfg.own_circuits
                )
                timings["own_circuits"] = timings.get("own_circuits", 0.0) + time.perf_counter() - t0
            whole.advance()
    return {
        "schema": "forgetlens.pipeline.audit/1",
        "base": base_spec,
        "tuned": {label: path for label, (_, path) in entries.items()},
        "behaviour": {name: {str(step): row for step, row in rows.items()} for name, rows in behaviour.items()},
        "layout": dataclasses.asdict(layout),
        "base_model": model_record(base_spec),
        "config": {
            "tasks": [t.name for t in tasks],
            "k": k,
            "n_boot": n_boot,
            "seed": seed,
            "n_examples": n_examples,
            "method": method,
            "cmap_top_m": top_m,
            "anatomy": anatomy,
            "anatomy_metric": cfg.anatomy_metric,
            "own_circuits": list(cfg.own_circuits),
        },
        "tasks": results,
        "timings": {**{k2: round(v, 2) for k2, v in timings.items()}, "total": round(time.perf_counter() - start, 2)},
        "versions": versions(),
    }
