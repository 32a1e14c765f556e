"""One model's own circuit on one task's discovery prompts, as a JSON record (``analysis/own_circuits.py`` compares
the records of the base and the tuned models; nothing here compares).

A record holds the circuit's heads, every head's score (DBM: its final mask), its faithfulness (every position
of the other heads ablated, as for any circuit), and for DBM circuits the faithfulness under DBM's own objective,
the loss curve and the cost; when asked, the necessity and sufficiency of given heads (those of the base DBM
circuit) at the last token.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from forgetlens.circuits.dbm import LastTokenPatcher, head_necessity_sufficiency
from forgetlens.circuits.discover import dbm_record, discover_on
from forgetlens.config.options import DiscoveryConfig, DiscoveryMethod
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks.base import TaskBatch

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


HALVES = ("half0", "half1")
"""The two halves of the discovery prompts the base circuit is found again on (the split-half ceiling)."""


def prompt_part(prompts: TaskBatch, part: str) -> TaskBatch:
    """``all`` the prompts, or the first (``half0``) or second (``half1``) half of them."""
    if part == "all":
        return prompts
    half = len(prompts) // 2
    rows = range(half) if part == "half0" else range(half, len(prompts))
    return prompts.subset(list(rows))


def heads_to_test(
    method: DiscoveryMethod,
    part: str,
    of_base: bool,
    necessity: bool,
    base_dbm_heads: Callable[[], list[tuple[int, int]]],
) -> tuple[list[tuple[int, int]] | None, bool]:
    """(``heads_to_test``, ``test_own_heads``) of :func:`own_circuit_record` for one model's own circuit: with
    ``necessity`` on, the base DBM circuit's heads are tested in the base (its own heads, found in the same call)
    and in every tuned model (``base_dbm_heads()``, read only then), on all the discovery prompts; a half of them,
    there for the split-half ceiling, and other methods' circuits test none."""
    if not (necessity and method == "dbm" and part == "all"):
        return None, False
    if of_base:
        return None, True
    return [(int(layer), int(head)) for layer, head in base_dbm_heads()], False


def own_circuit_record(
    model: PreTrainedModel,
    layout: HeadLayout,
    prompts: TaskBatch,
    cfg: DiscoveryConfig,
    method: DiscoveryMethod,
    heads_to_test: list[tuple[int, int]] | None = None,
    test_own_heads: bool = False,
) -> dict:
    """``model``'s circuit of ``prompts`` by ``method`` (every other option from ``cfg``); ``heads_to_test``
    (or, with ``test_own_heads``, the circuit's own heads): heads whose necessity and sufficiency at the last
    token are measured too."""
    start = time.perf_counter()
    circuit = discover_on(model, layout, prompts, dataclasses.replace(cfg, method=method, k=None))
    record = {
        "method": method,
        "n_prompts": len(prompts),
        "heads": [list(h) for h in circuit.heads],
        "k": circuit.k,
        "scores": circuit.scores.tolist(),  # [layer][head]; DBM: final masks
        "faithfulness": circuit.faithfulness,
    }
    if circuit.dbm is not None:
        record["dbm"] = dbm_record(circuit.dbm)
        record["objective_faithfulness"] = circuit.dbm.objective_faithfulness
    if test_own_heads:
        heads_to_test = circuit.heads
    if heads_to_test:
        patcher = LastTokenPatcher(model, layout, prompts, cfg.ablation, cfg.batch_size)
        tested = head_necessity_sufficiency(patcher, heads_to_test)
        record["heads_tested"] = [{"head": list(h), **values} for h, values in tested.items()]
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


def read_own_record(path: Path | str, n_layers: int, n_heads: int) -> dict:
    """A record written by :func:`own_circuit_record` for a model of ``n_layers`` x ``n_heads`` heads; a missing
    field, a head outside the model or scores of another shape is one ForgetlensError naming the file."""
    from forgetlens.artefacts import read_json, record_field
    from forgetlens.circuits.circuit import check_heads
    from forgetlens.errors import ForgetlensError

    record = read_json(path)
    if not isinstance(record, dict):
        raise ForgetlensError(f"{path}: expected a JSON object (an own-circuit record)")
    record_field(record, "method", path, str)
    record_field(record, "k", path, int)
    check_heads(record_field(record, "heads", path, list), path, n_layers, n_heads)
    if not isinstance(record.get("faithfulness", "missing"), (int, float, type(None))):
        raise ForgetlensError(f"{path}: field 'faithfulness' should be a number")
    scores = record_field(record, "scores", path, list)
    if len(scores) != n_layers or not all(
        isinstance(row, list) and len(row) == n_heads and all(isinstance(x, (int, float)) for x in row)
        for row in scores
    ):
        raise ForgetlensError(f"{path}: field 'scores' should be {n_layers} x {n_heads} numbers")
    return record
