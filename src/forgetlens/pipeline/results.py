"""``results.json``: its schema, written once here (JSON Schema), the one way to write and read the file, and every
CSV table written beside it or in a run directory.

``forgetlens run`` validates what it writes and ``forgetlens report`` what it reads, so a field the code forgets
to write, or a file of another shape, fails with one line naming the field.  docs/results-schema.md says what
each field means.  Bump ``SCHEMA_VERSION``'s major number when a field is renamed or removed, its minor number
when one is added.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, get_args

from forgetlens.analysis.frontier import StopReason
from forgetlens.analysis.summary import checkpoint_rows
from forgetlens.artefacts import read_json, write_json
from forgetlens.config.methods import FINETUNE_METHODS
from forgetlens.errors import ForgetlensError
from forgetlens.tasks.base import METRICS
from forgetlens.utils import csv_text

SCHEMA_VERSION = "1.7"
"""1.7: ``paired_tests[TASK][COMPARISON]``, McNemar on top-1 and a paired bootstrap of log p(answer) on the same
prompts (optional; runs that record per-prompt prior-task values); ``runs[RUN].divergence``, where the run's last
checkpoint departs from the base in the text (optional); ``runs[RUN].lr``, the run's own learning rate (optional;
grid runs are not at the config's rate); ``runs[RUN].checkpoints[i].prior[TASK].logp_answer``;
``claims.circuits[TASK].forgetting_difference_sft_minus_rl`` in accuracy points lost (base minus the step), no longer
one minus the retention ratio; ``dcv[PAIR].retention`` and ``.preserved_fraction`` are RL minus SFT (every DCV form
positive when SFT damages more; before 1.7 they were SFT minus RL).
1.6: ``target_example``, one held-out target question with its answer (optional), for the report's setup.
1.5: ``tasks[TASK].own_circuits[METHOD]``, every model's own circuit against the base's (optional;
``own_circuits.enabled``); runs ``sft-rl-sSEED`` (RL from SFT, ``rl_from_sft``).
1.4: ``tasks[TASK].anatomy[LABEL]``, where each run's change lives (optional; ``anatomy.enabled``);
``v_circuit_sum`` (and ``v_circuit_total_sum``), Σ over C0 of V_cmap(h), beside the weighted mean V(C0).
1.3: strict JSON (an undefined number, such as a 0/0 retention or one seed's interval, is ``null``, read
back as NaN); ``versions`` match a version pattern; ``config``'s fields shown in the report are typed.
1.2: ``n_eval_records`` per run is required (1.1 files written before 2026-11-29 lack it)."""

_NUMBER = {"type": ["number", "null"]}
"""A number; ``null`` where it is undefined (written for NaN, read back as NaN)."""
_NUMBERS = {"type": "array", "items": _NUMBER}
_GRID = {"type": "array", "items": {"type": "array", "items": _NUMBER}}
"""Per-head values, ``[layer][head]``."""


VERSION_PATTERN = r"^[A-Za-z0-9._+~ -]{1,200}$"
"""What a version (or platform) string may hold: a release number, a local suffix, ``not installed``."""


def _object(properties: dict, required: list[str] | None = None, extra: bool | dict = True) -> dict:
    """An object with these properties, all required unless ``required`` says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": extra,
    }


def _map_of(value: dict) -> dict:
    """An object whose keys are names (runs, tasks, labels) and whose values all have one shape."""
    return {"type": "object", "additionalProperties": value}


_INTERVAL = _object({"value": {}, "ci_low": {}, "ci_high": {}}, extra={})
"""A statistic with its 95 % interval: numbers, or per-head grids of numbers (and any further statistics of it,
such as per-seed values)."""
_SEED_MEAN = _object(
    {"value": _NUMBER, "ci_low": _NUMBER, "ci_high": _NUMBER, "n_seeds": {"type": "integer"}, "per_seed": _NUMBERS}
)
_R2 = _object({"r2": _NUMBER, "ci_low": _NUMBER, "ci_high": _NUMBER})
_CURVE = _object(
    {
        "steps": {"type": "array", "items": {"type": "integer"}},
        "mean": _NUMBERS,
        "low": _NUMBERS,
        "high": _NUMBERS,
        "n_seeds": {"type": "integer"},
    }
)
_PRIOR = _object(
    {"accuracy": _NUMBER, "logit_diff": _NUMBER, "retention_accuracy": _NUMBER, "retention_logit_diff": _NUMBER}
)
_CHECKPOINT = _object(
    {
        "step": {"type": "integer"},
        "target_accuracy": _NUMBER,
        "kl_forward": _NUMBER,
        "prior": _map_of(_PRIOR),
        "kl_samples_cut": _NUMBER,
        "general": _object({"kl_chat": _NUMBER, "knowledge_accuracy": _NUMBER}),
    },
    required=["step", "target_accuracy", "kl_forward", "prior"],
)
DIVERGENCE = _object(
    {"step": {"type": "integer"}, "target": {"type": "array"}, "chat": {"type": "array"}},
    required=["step", "target"],
)
"""Where a run's last checkpoint departs from the base in the text (``runs/NAME/divergence.json``)."""

_RUN = _object(
    {
        "method": {"type": "string"},
        "seed": {"type": "integer"},
        "n_eval_records": {"type": "integer"},
        "steps_to_threshold": {"type": ["integer", "null"]},
        "target_gain_per_question": _NUMBERS,
        "budget": {"type": "object"},
        "checkpoints": {"type": "array", "items": _CHECKPOINT, "minItems": 1},
        "lr": {"type": "number", "exclusiveMinimum": 0},
        "divergence": DIVERGENCE,
    },
    required=[
        "method",
        "seed",
        "n_eval_records",
        "steps_to_threshold",
        "target_gain_per_question",
        "budget",
        "checkpoints",
    ],
)
_MODEL_STATS = _object(
    {
        key: _INTERVAL
        for key in (
            "ie_base",
            "ie_tuned",
            "v_imp",
            "v_cmap",
            "drift",
            "faithfulness_base",
            "faithfulness_tuned",
            "retention",
            "v_circuit",
            "v_imp_circuit",
            "drift_circuit",
            "vulnerable_fraction",
            "preserved_fraction",
            "jaccard",
            "spearman",
            "preserved_area",
            "jaccard_area",
        )
    }
    | {
        "cmap_exact": {"type": "array"},
        "v_cmap_total": _INTERVAL,
        "v_circuit_total": _INTERVAL,
        "v_circuit_sum": _INTERVAL,
        "v_circuit_total_sum": _INTERVAL,
        "cmap_total_exact": {"type": "array"},
    },
    required=["v_cmap", "v_circuit", "retention", "faithfulness_base", "faithfulness_tuned", "cmap_exact"],
)
_NULL_COMPARED = {"value": _NUMBER, "null_mean": _NUMBER, "null_q95": _NUMBER, "p_null": _NUMBER}
"""A set measure of an own circuit beside its permutation null (``analysis/own_circuits.with_null``)."""
_TASK = _object(
    {
        "circuit": _object(
            {
                "heads": {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                },
                "k": {"type": "integer"},
                "faithfulness": _NUMBER,
            }
        ),
        "circuit_stability": _object(
            {"mean_jaccard": _NUMBER, "ci_low": _NUMBER, "ci_high": _NUMBER, "n_boot": {"type": "integer"}}
        ),
        "base_scores": _GRID,
        "n_prompts": {"type": "integer"},
        "n_boot": {"type": "integer"},
        "models": _map_of(_MODEL_STATS),
        "dcv": _map_of({"type": "object", "additionalProperties": _INTERVAL}),
        "dcv_test": _map_of(
            _object(
                {"p_value": {"type": "array"}, "q_value_bh": {"type": "array"}, "n_permutations": {"type": "integer"}}
            )
        ),
        "matched_levels": {"type": "object"},
        "seeds": _object({"models": {"type": "object"}, "dcv": {"type": "object"}}),
        "anatomy": _map_of(
            _object(
                {
                    "metric": {"enum": list(METRICS)},
                    "n_prompts": {"type": "integer"},
                    "behaviour": {"type": "object"},
                    "induced": {"type": "object"},
                    "restored": {"type": "object"},
                    "interaction": {"type": "object"},
                    "heads_outside_circuit": {"type": "array"},
                    "format": {"type": "object"},
                }
            )
        ),
        "own_circuits": _map_of(
            _object(
                {
                    "base": _object({"k": {"type": "integer"}, "faithfulness": _NUMBER}, required=["k", "heads"]),
                    "ceiling": {"type": ["object", "null"]},
                    "models": _map_of(
                        _object(
                            {
                                "k": {"type": "integer"},
                                "retention": _object(_NULL_COMPARED),
                                "overlap": _object(_NULL_COMPARED),
                                "jaccard": _object(_NULL_COMPARED),
                                "faithfulness": _NUMBER,
                            }
                        )
                    ),
                    "groups": {"type": "object"},
                    "dcv_paper": {"type": "object"},
                },
                required=["base", "ceiling", "models", "groups", "dcv_paper"],
            )
        ),
    },
    required=[
        "circuit",
        "circuit_stability",
        "base_scores",
        "n_prompts",
        "n_boot",
        "models",
        "dcv",
        "dcv_test",
        "matched_levels",
        "seeds",
    ],
)
_CLAIM_VERDICT = {"enum": ["held", "reversed", "negligible", "inconclusive"]}

RESULTS_SCHEMA: dict = _object(
    {
        "schema_version": {"type": "string"},
        "config": _object(
            {
                "model": {"type": "string"},
                "methods": {"type": "array", "items": {"enum": list(FINETUNE_METHODS)}, "minItems": 1},
                "n_boot": {"type": "integer"},
                "finetune": _object({"steps": {"type": "integer"}}),
            }
        ),
        "seeds": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        "versions": _map_of({"type": "string", "pattern": VERSION_PATTERN}),
        "model": _object({"name": {"type": "string"}, "provenance": {"type": "object"}}, required=["name"]),
        "layout": _object(
            {
                "architecture": {"type": "string"},
                "n_layers": {"type": "integer"},
                "n_heads": {"type": "integer"},
                "d_head": {"type": "integer"},
            }
        ),
        "accuracy_threshold": _NUMBER,
        "runs": _map_of(_RUN),
        "tasks": _map_of(_TASK),
        "benchmarks": {"type": "object"},
        "curves": _map_of(_map_of(_CURVE)),
        "target_gain": _map_of(
            _object({"seeds": _SEED_MEAN, "questions": {"type": "object"}, "step": {"type": "integer"}})
        ),
        "forgetting_predictors": _map_of(
            _object({"n_points": {"type": "integer"}, "kl": _R2, "v_circuit": _R2, "both": _R2})
        ),
        "paired_tests": _map_of(
            _map_of(
                _object(
                    {
                        "n_pairs": {"type": "integer"},
                        "mcnemar_top1": _object(
                            {"only_a": {"type": "integer"}, "only_b": {"type": "integer"}, "p": _NUMBER}
                        ),
                        "logp_answer": _object({"value": _NUMBER, "ci_low": _NUMBER, "ci_high": _NUMBER, "p": _NUMBER}),
                    }
                )
            )
        ),
        "claims": _object(
            {
                "adaptation": _object(
                    {"verdict": _CLAIM_VERDICT, "difference_sft_minus_rl": _INTERVAL}, required=["verdict"]
                ),
                "circuits": _map_of(
                    _object(
                        {
                            "dcv_verdict": _CLAIM_VERDICT,
                            "forgetting_verdict": _CLAIM_VERDICT,
                            "dcv_circuit": _INTERVAL,
                            "forgetting_difference_sft_minus_rl": _INTERVAL,
                        },
                        required=["dcv_verdict", "forgetting_verdict"],
                    )
                ),
            },
            required=[],
        ),  # empty without both an sft and an rl run
        "timings": _map_of(_NUMBER),
        "target_example": _object({"question": {"type": "string"}, "answer": {"type": "string"}}),
    },
    required=[
        "schema_version",
        "config",
        "seeds",
        "versions",
        "model",
        "layout",
        "accuracy_threshold",
        "runs",
        "tasks",
        "benchmarks",
        "curves",
        "target_gain",
        "forgetting_predictors",
        "claims",
        "timings",
    ],
    extra=False,
)
"""JSON Schema (draft 2020-12) of ``results.json``; derived sections (curves ... claims) included."""


BEHAVIOUR_ROW = {
    **_CHECKPOINT,
    "properties": {
        **_CHECKPOINT["properties"],
        "target_correct": _NUMBERS,
        "prior": _map_of(_object({"accuracy": _NUMBER, "logit_diff": _NUMBER}, required=["accuracy", "logit_diff"])),
    },
}
"""One checkpoint's behaviour row as a run folder keeps it (``behaviour/checkpoint-N.json``, the base's shared row)."""
BEHAVIOUR_TABLE = _object(
    {
        "method": {"type": "string"},
        "seed": {"type": "integer"},
        "n_eval_records": {"type": "integer"},
        "accuracy_threshold": _NUMBER,
        "steps_to_threshold": {"type": ["integer", "null"]},
        "checkpoints": {"type": "array", "items": BEHAVIOUR_ROW, "minItems": 1},
    },
    required=["seed", "n_eval_records", "steps_to_threshold", "checkpoints"],
)
"""A run's ``behaviour.json``."""
BUDGET = _object(
    {
        "optimizer_steps": {"type": "integer", "minimum": 0},
        "wall_seconds_this_session": _NUMBER,
        "frac_reward_zero_std": _NUMBERS,
        "frac_trained_zero_std": _NUMBERS,
        "reward": _NUMBERS,
        "stop_reason": {"enum": [*get_args(StopReason), None]},
    },
    required=["optimizer_steps"],
)
"""A run's ``budget.json`` (the fields forgetlens reads back)."""
KL_SAMPLES = {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}}
"""The base model's sampled completions the forward KL is summed over (``base-behaviour/KEY.kl-samples.json``)."""
TRAINING_LOG = {"type": "array", "items": {"type": "object"}}
"""A run's ``training_log.json``: the trainer's log history."""


def read_record(path: Path, schema: dict, what: str) -> Any:
    """A JSON record of a run folder, checked against ``schema`` (:func:`artefacts.read_json` first: no link, not
    too large, strict UTF-8 JSON); its first problem is one ForgetlensError naming the file, the field and ``what``
    it should be. ``null`` where the schema has a number reads back as NaN."""
    data = read_json(path, expect=None)
    problems = schema_problems(data, schema)
    if problems:
        raise ForgetlensError(f"{path}: not {what} forgetlens wrote: {problems[0]}")
    return _undefined_as_nan(data, schema)


def schema_problems(results: object, schema: dict | None = None) -> list[str]:
    """Every way ``results`` departs from ``schema`` (default :data:`RESULTS_SCHEMA`), one line each naming the
    field."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(RESULTS_SCHEMA if schema is None else schema)
    out = []
    for error in sorted(validator.iter_errors(results), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        out.append(f"{where}: {error.message[:200]}")
    return out


def write_results(results: dict, path: Path) -> None:
    """Validate ``results`` and write it atomically as strict JSON (NaN as ``null``); a schema violation is a
    bug, so it raises before writing."""
    problems = schema_problems(results)
    if problems:
        raise AssertionError(f"results.json would not match its schema: {problems[:5]}")
    write_json(path, results)


_OPAQUE = {"type": "object"}
"""Stands for a part of the file whose shape the schema leaves open (config, budgets): its nulls stay null."""


def _is_number(schema: dict) -> bool:
    """Whether ``schema`` admits a number that may be undefined: :data:`_NUMBER`, or ``{}`` (a statistic of any
    shape, such as an interval's value or per-head grid)."""
    kinds = schema.get("type", [])
    return not schema or (isinstance(kinds, list) and "number" in kinds and "null" in kinds)


def _undefined_as_nan(value, schema: dict):
    """``value`` with every ``null`` in a place the schema types as a number read back as NaN, so a result read
    from disk equals the one that was written."""
    if value is None:
        return math.nan if _is_number(schema) else None
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        child = extra if isinstance(extra, dict) else ({} if not schema else _OPAQUE)
        return {k: _undefined_as_nan(v, props.get(k, child)) for k, v in value.items()}
    if isinstance(value, list):
        return [_undefined_as_nan(v, schema.get("items", {} if not schema else _OPAQUE)) for v in value]
    return value


def read_results(path: Path) -> dict:
    """``results.json`` as a dict, or one ForgetlensError naming the file and its first problem."""
    path = Path(path)
    if not path.is_file():
        raise ForgetlensError(f"{path} does not exist; run `forgetlens run --out {path.parent}` first")
    results = read_json(path)
    problems = schema_problems(results)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ForgetlensError(f"{path}: not a forgetlens results.json (schema {SCHEMA_VERSION}): {problems[0]}{more}")
    return _undefined_as_nan(results, RESULTS_SCHEMA)


# --- the CSV files beside results.json and in each run directory ---------------------------------------
def per_head_csv(result: dict) -> str:
    """One row per (task, model, head): base importance, V_imp, V_cmap (local, total), drift with CIs, circuit flag."""
    header = [
        "task",
        "model",
        "layer",
        "head",
        "in_circuit",
        "ie_base",
        "v_imp",
        "v_imp_low",
        "v_imp_high",
        "v_cmap",
        "v_cmap_low",
        "v_cmap_high",
        "v_cmap_total",
        "v_cmap_total_low",
        "v_cmap_total_high",
        "drift",
        "drift_low",
        "drift_high",
        "v_cmap_exact",
        "v_cmap_total_exact",
    ]
    lines = []
    for task, r in result["tasks"].items():
        members = {tuple(h) for h in r["circuit"]["heads"]}
        dcv_rows = [(f"dcv{pair}", stats) for pair, stats in r.get("dcv", {}).items()]
        for model, stats in list(r["models"].items()) + dcv_rows:
            ie = stats.get("ie_base", r["models"][next(iter(r["models"]))]["ie_base"])["value"]
            for layer, row in enumerate(ie):
                for head in range(len(row)):
                    vals = []
                    for key in ("v_imp", "v_cmap", "v_cmap_total", "drift"):
                        s = stats.get(key)
                        vals += (
                            [s["value"][layer][head], s["ci_low"][layer][head], s["ci_high"][layer][head]]
                            if s
                            else ["", "", ""]
                        )
                    # 1: exact patching, 0: first-order estimate, empty: not recorded (DCV rows, old results)
                    exact = [
                        int(stats[key][layer][head]) if key in stats else ""
                        for key in ("cmap_exact", "cmap_total_exact")
                    ]
                    lines.append(
                        [task, model, layer, head, int((layer, head) in members), ie[layer][head], *vals, *exact]
                    )
    return csv_text(header, lines)


def behaviour_csv(rows: list[dict]) -> str:
    """One line per checkpoint: step, target accuracy, KL, and per prior task accuracy/logit diff/retention."""
    tasks = list(rows[0]["prior"]) if rows else []
    general = list(rows[0].get("general", {})) if rows else []
    header = (
        ["step", "target_accuracy", "kl_forward"]
        + general
        + [f"{t}_{k}" for t in tasks for k in ("accuracy", "logit_diff", "retention_accuracy", "retention_logit_diff")]
    )
    return csv_text(
        header,
        (
            [r["step"], r["target_accuracy"], r["kl_forward"]]
            + [r["general"][g] for g in general]
            + [
                r["prior"][t][k]
                for t in tasks
                for k in ("accuracy", "logit_diff", "retention_accuracy", "retention_logit_diff")
            ]
            for r in rows
        ),
    )


def checkpoints_csv(results: dict) -> str:
    """One line per (run, checkpoint): behaviour and each task's circuit values (``checkpoint_rows``)."""
    rows = checkpoint_rows(results)
    header = list(rows[0])
    return csv_text(header, ([r.get(k, "") for k in header] for r in rows))
