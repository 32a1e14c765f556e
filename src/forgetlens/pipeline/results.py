"""``results.json``: its schema, written once here (JSON Schema), and the one way to write and read the file.

``forgetlens run`` validates what it writes and ``forgetlens report`` what it reads, so a field the code forgets
to write, or a file of another shape, fails with one line naming the field.  docs/results-schema.md says what
each field means.  Bump ``SCHEMA_VERSION``'s major number when a field is renamed or removed, its minor number
when one is added.
"""

from __future__ import annotations

import json
from pathlib import Path

from forgetlens.errors import ForgetlensError
from forgetlens.utils import atomic_write_text

SCHEMA_VERSION = "1.2"
"""1.2: ``n_eval_records`` per run is required (1.1 files written before 2026-11-29 lack it)."""

_NUMBER = {"type": "number"}
_NUMBERS = {"type": "array", "items": _NUMBER}
_GRID = {"type": "array", "items": {"type": "array", "items": _NUMBER}}
"""Per-head values, ``[layer][head]``."""


def _object(properties: dict, required: list[str] | None = None, extra=True) -> dict:
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


_INTERVAL = _object({"value": {}, "ci_low": {}, "ci_high": {}})
"""A statistic with its 95 % interval: numbers, or per-head grids of numbers."""
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
_RUN = _object(
    {
        "method": {"type": "string"},
        "seed": {"type": "integer"},
        "n_eval_records": {"type": "integer"},
        "steps_to_threshold": {"type": ["integer", "null"]},
        "target_gain_per_question": _NUMBERS,
        "budget": {"type": "object"},
        "checkpoints": {"type": "array", "items": _CHECKPOINT, "minItems": 1},
    }
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
        "cmap_total_exact": {"type": "array"},
    },
    required=["v_cmap", "v_circuit", "retention", "faithfulness_base", "faithfulness_tuned", "cmap_exact"],
)
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
    }
)
_CLAIM_VERDICT = {"enum": ["held", "reversed", "negligible", "inconclusive"]}

RESULTS_SCHEMA: dict = _object(
    {
        "schema_version": {"type": "string"},
        "config": {"type": "object"},
        "seeds": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        "versions": _map_of({"type": "string"}),
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
        "claims": _object(
            {
                "adaptation": _object({"verdict": _CLAIM_VERDICT}, required=["verdict"]),
                "circuits": _map_of(
                    _object(
                        {"dcv_verdict": _CLAIM_VERDICT, "forgetting_verdict": _CLAIM_VERDICT},
                        required=["dcv_verdict", "forgetting_verdict"],
                    )
                ),
            },
            required=[],
        ),  # empty without both an sft and an rl run
        "timings": _map_of(_NUMBER),
    },
    extra=False,
)
"""JSON Schema (draft 2020-12) of ``results.json``; derived sections (curves ... claims) included."""


def schema_problems(results) -> list[str]:
    """Every way ``results`` departs from :data:`RESULTS_SCHEMA`, one line each naming the field."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(RESULTS_SCHEMA)
    out = []
    for error in sorted(validator.iter_errors(results), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        out.append(f"{where}: {error.message[:200]}")
    return out


def write_results(results: dict, path: Path) -> None:
    """Validate ``results`` and write it atomically; a schema violation is a bug, so it raises before writing."""
    problems = schema_problems(results)
    if problems:
        raise AssertionError(f"results.json would not match its schema: {problems[:5]}")
    atomic_write_text(path, json.dumps(results, indent=1))


def read_results(path: Path) -> dict:
    """``results.json`` as a dict, or one ForgetlensError naming the file and its first problem."""
    path = Path(path)
    if not path.is_file():
        raise ForgetlensError(f"{path} does not exist; run `forgetlens run --out {path.parent}` first")
    try:
        results = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ForgetlensError(f"{path}: not UTF-8 text; expected a results.json written by forgetlens run") from None
    except json.JSONDecodeError as exc:
        raise ForgetlensError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    problems = schema_problems(results)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ForgetlensError(f"{path}: not a forgetlens results.json (schema {SCHEMA_VERSION}): {problems[0]}{more}")
    return results
