"""Find a prior task's head-level circuit in one model: score heads, rank, pick k by faithfulness.

Heads are scored, and the circuit size chosen by its faithfulness curve, on a
discovery split; every metric of the circuit (faithfulness in the base and in
tuned models, vulnerability) is then measured on a separate evaluation split
drawn with another seed, so nothing is graded on the prompts that selected it.
"""

from __future__ import annotations

import dataclasses
import time

from forgetlens.circuits.attribution import attribution_pass
from forgetlens.circuits.circuit import (
    Circuit,
    FaithfulnessProbe,
    choose_k,
    default_ks,
    rank_heads,
    score_heads,
    search_k,
)
from forgetlens.config import DiscoveryConfig
from forgetlens.errors import ForgetlensError
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks.base import PriorTask, TaskBatch, check_vocabulary, encode_examples

EVAL_SEED_OFFSET = 1_000_003


def task_splits(tokenizer, task: PriorTask, n: int, seed: int) -> tuple[TaskBatch, TaskBatch]:
    """(discovery, evaluation) batches of ``n`` prompts each, from disjoint seeds."""
    check_vocabulary(tokenizer, task)
    discovery = encode_examples(tokenizer, task.examples(n, seed), task.name)
    evaluation = encode_examples(tokenizer, task.examples(n, seed + EVAL_SEED_OFFSET), task.name)
    return discovery, evaluation


def discover_circuit(model, tokenizer, task: PriorTask, cfg: DiscoveryConfig) -> Circuit:
    """Score every head and choose the circuit size, both on the discovery split.

    The evaluation split (``task_splits``) is left for measuring the circuit: nothing about C0 is
    selected on the prompts its metrics are later computed on.
    """
    layout = HeadLayout.of(model)
    if cfg.k is not None and not 0 < cfg.k <= layout.n_total:
        raise ForgetlensError(f"--k must be between 1 and {layout.n_total} (the model's heads), got {cfg.k}")
    discovery, _ = task_splits(tokenizer, task, cfg.n_examples, cfg.seed)
    sources = full = None
    if cfg.method == "attribution":  # its corrupted forward and clean metric serve faithfulness too
        scored = attribution_pass(
            model,
            layout,
            discovery,
            cfg.metric,
            batch_size=cfg.batch_size,
            keep_donor_outputs=cfg.ablation == "counterfactual",
        )
        per_prompt, sources, full = scored.scores, scored.donor_outputs, scored.receiver_metric
    else:
        per_prompt = score_heads(model, layout, discovery, cfg.method, cfg.metric, cfg.ig_steps, cfg.batch_size)
    scores = per_prompt.mean(0)
    order = rank_heads(scores)
    probe = FaithfulnessProbe(model, layout, discovery, cfg.ablation, cfg.metric, cfg.batch_size, sources, full)
    if cfg.full_curve:
        ks = default_ks(layout.n_total)
        curve = probe.curve(order, sorted(set(ks) | ({cfg.k} if cfg.k else set())))
        k = choose_k(curve, cfg.k, cfg.faithfulness_target)
    elif cfg.k is not None:
        k, curve = cfg.k, probe.curve(order, [cfg.k])
    else:
        k, curve = search_k(probe, order, cfg.faithfulness_target)
    faithfulness = next(p["faithfulness"] for p in curve if p["k"] == k)
    return Circuit(
        task=task.name,
        method=cfg.method,
        metric=cfg.metric,
        ablation=cfg.ablation,
        scores=scores,
        per_prompt=per_prompt,
        heads=order[:k],
        faithfulness=faithfulness,
        curve=curve,
    )


def circuit_to_json(
    circuit: Circuit, model_name: str, cfg: DiscoveryConfig, layout: HeadLayout, seconds: float, versions: dict
) -> dict:
    """The documented JSON form of a discovery result."""
    n_layers, n_heads = circuit.scores.shape
    return {
        "task": circuit.task,
        "model": model_name,
        "method": circuit.method,
        "metric": circuit.metric,
        "ablation": circuit.ablation,
        "layout": dataclasses.asdict(layout),
        "heads": [
            {"layer": l, "head": h, "score": float(circuit.scores[l, h])}
            for l in range(n_layers)
            for h in range(n_heads)
        ],
        "circuit": {"heads": [[l, h] for l, h in circuit.heads], "k": circuit.k, "faithfulness": circuit.faithfulness},
        "faithfulness_curve": circuit.curve,
        "n_discovery_prompts": int(circuit.per_prompt.shape[0]),
        "config": dataclasses.asdict(cfg),
        "seconds": round(seconds, 3),
        "versions": versions,
    }


def timed_discovery(model, tokenizer, task: PriorTask, cfg: DiscoveryConfig) -> tuple[Circuit, float]:
    """:func:`discover_circuit` and its wall time in seconds."""
    start = time.perf_counter()
    circuit = discover_circuit(model, tokenizer, task, cfg)
    return circuit, time.perf_counter() - start
