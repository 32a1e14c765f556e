"""Find a prior task's head-level circuit in one model: score heads, rank, pick k by faithfulness.

Heads are scored, and the circuit size chosen by its faithfulness curve, on a
discovery split; every metric of the circuit (faithfulness in the base and in
tuned models, vulnerability) is then measured on a separate evaluation split
drawn with another seed, so nothing is graded on the prompts that selected it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

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
from forgetlens.circuits.dbm import DBMResult
from forgetlens.config.options import DiscoveryConfig
from forgetlens.errors import ForgetlensError
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks.base import PriorTask, TaskBatch, check_vocabulary, encode_examples

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


EVAL_SEED_OFFSET = 1_000_003
"""Added to the discovery seed to draw the evaluation prompts: a large prime, so that the evaluation split of one
seed is never the discovery split of another small seed (the two splits are disjoint draws, not a shuffle)."""


def task_splits(tokenizer: PreTrainedTokenizerBase, task: PriorTask, n: int, seed: int) -> tuple[TaskBatch, TaskBatch]:
    """(discovery, evaluation) batches of ``n`` prompts each, from disjoint seeds."""
    check_vocabulary(tokenizer, task)
    discovery = encode_examples(tokenizer, task.examples(n, seed), task.name)
    evaluation = encode_examples(tokenizer, task.examples(n, seed + EVAL_SEED_OFFSET), task.name)
    return discovery, evaluation


def discover_circuit(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: PriorTask, cfg: DiscoveryConfig
) -> Circuit:
    """Score every head and choose the circuit size, both on the discovery split.

    The evaluation split (``task_splits``) is left for measuring the circuit: nothing about C0 is
    selected on the prompts its metrics are later computed on.
    """
    layout = HeadLayout.of(model)
    if cfg.k is not None and not 0 < cfg.k <= layout.n_total:
        raise ForgetlensError(f"--k must be between 1 and {layout.n_total} (the model's heads), got {cfg.k}")
    discovery, _ = task_splits(tokenizer, task, cfg.n_examples, cfg.seed)
    return discover_on(model, layout, discovery, cfg)


def discover_on(model: PreTrainedModel, layout: HeadLayout, prompts: TaskBatch, cfg: DiscoveryConfig) -> Circuit:
    """The circuit of ``prompts`` by ``cfg.method`` (any prompt set: a split, half of one)."""
    if cfg.method == "dbm":
        return dbm_circuit(model, layout, prompts, cfg)
    sources = full = None
    if cfg.method == "attribution":  # its corrupted forward and clean metric serve faithfulness too
        scored = attribution_pass(
            model,
            layout,
            prompts,
            metric=cfg.metric,
            batch_size=cfg.batch_size,
            keep_donor_outputs=cfg.ablation == "counterfactual",
        )
        per_prompt, sources, full = scored.scores, scored.donor_outputs, scored.receiver_metric
    else:
        per_prompt = score_heads(
            model, layout, prompts, cfg.method, metric=cfg.metric, ig_steps=cfg.ig_steps, batch_size=cfg.batch_size
        )
    scores = per_prompt.mean(0)
    order = rank_heads(scores)
    probe = FaithfulnessProbe(
        model, layout, prompts, cfg.ablation, metric=cfg.metric, batch_size=cfg.batch_size, sources=sources, full=full
    )
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
        task=prompts.task,
        method=cfg.method,
        metric=cfg.metric,
        ablation=cfg.ablation,
        scores=scores,
        per_prompt=per_prompt,
        heads=order[:k],
        faithfulness=faithfulness,
        curve=curve,
    )


def dbm_circuit(model: PreTrainedModel, layout: HeadLayout, prompts: TaskBatch, cfg: DiscoveryConfig) -> Circuit:
    """The DBM circuit of ``prompts`` (``circuits/dbm.py``); its faithfulness is measured as every other
    method's, every position of the heads outside it ablated by ``cfg.ablation``, so circuits compare.

    ``scores`` are the final masks m_h; DBM has no per-prompt scores, so ``per_prompt`` repeats the masks for
    every prompt (a bootstrap over prompts of them says nothing: the split-half ceiling of
    ``analysis/own_circuits.py`` is DBM's stability).
    """
    from forgetlens.circuits.dbm import flip_faithfulness, make_patcher, optimise_masks

    patcher = make_patcher(model, layout, prompts, cfg.dbm, cfg.ablation, cfg.batch_size)
    result = optimise_masks(patcher, cfg.dbm)
    if cfg.dbm.objective == "flip":  # the paper's F(C|M)/F(M): the circuit's share of the all-heads patch
        result.objective_faithfulness = flip_faithfulness(patcher, result.heads)
    probe = FaithfulnessProbe(model, layout, prompts, cfg.ablation, metric=cfg.metric, batch_size=cfg.batch_size)
    faithfulness = probe.faithfulness(result.heads)
    return Circuit(
        task=prompts.task,
        method="dbm",
        metric=cfg.metric,
        ablation=cfg.ablation,
        scores=result.masks,
        per_prompt=result.masks.unsqueeze(0).expand(len(prompts), -1, -1).clone(),
        heads=sorted(result.heads, key=lambda h: (-float(result.masks[h]), h)),
        faithfulness=faithfulness,
        curve=[{"k": len(result.heads), "faithfulness": faithfulness}],
        dbm=result,
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
        **({"dbm": dbm_record(circuit.dbm)} if circuit.dbm is not None else {}),
        "config": dataclasses.asdict(cfg),
        "seconds": round(seconds, 3),
        "versions": versions,
    }


def dbm_record(result: DBMResult) -> dict:
    """The JSON form of a DBM run: final masks, mask logits, loss curve, cost."""
    return {
        "masks": result.masks.tolist(),
        "mask_logits": result.logits.tolist(),
        "loss_curve": result.loss_curve,
        "objective_faithfulness": result.objective_faithfulness,
        "forward_equivalents": round(result.forward_equivalents, 3),
        "seconds": round(result.seconds, 3),
    }


def timed_discovery(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: PriorTask, cfg: DiscoveryConfig
) -> tuple[Circuit, float]:
    """:func:`discover_circuit` and its wall time in seconds."""
    start = time.perf_counter()
    circuit = discover_circuit(model, tokenizer, task, cfg)
    return circuit, time.perf_counter() - start
