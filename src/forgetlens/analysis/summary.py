"""Numbers derived from a study's results: curves over seeds, forgetting predictors, the two claims.

Everything here is a pure function of ``results.json``'s measured content, so ``forgetlens report``
can rebuild it (and the report) without rerunning anything.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from forgetlens.analysis.runs import pair_comparison, pair_label
from forgetlens.analysis.seeds import t_interval
from forgetlens.analysis.stats import bootstrap_indices
from forgetlens.config.methods import DEFAULT_COMPARISON

CLAIM_HELD, CLAIM_REVERSED, CLAIM_UNCLEAR, CLAIM_NEGLIGIBLE = "held", "reversed", "inconclusive", "negligible"
MIN_EFFECT = 0.01
"""Smallest difference a verdict counts as an effect: 1 point of target accuracy or of prior-task retention,
or 1 % of a task's total effect for DCV(C0).  A difference whose interval excludes 0 but whose size is below
this is reported ``negligible``: with many prompts, tiny consistent differences are statistically clear."""


def runs_by_method(results: dict) -> dict[str, list[str]]:
    """{method: [run names, by seed]}."""
    out: dict[str, list[str]] = {}
    for name, run in sorted(results["runs"].items(), key=lambda kv: kv[1]["seed"]):
        out.setdefault(run["method"], []).append(name)
    return out


def _steps(results: dict, name: str) -> list[int]:
    return [r["step"] for r in results["runs"][name]["checkpoints"]]


def prior_tasks(results: dict) -> list[str]:
    return list(results["tasks"])


GENERAL_LABELS = {
    "kl_forward": "forward KL on target prompts",
    "general/kl_chat": "forward KL on general chat",
    "general/knowledge_accuracy": "general-knowledge MC accuracy",
}
"""Display names of the drift curves (``curves[METHOD][KEY]``) in the report's table and figure."""


def general_measures(results: dict) -> list[str]:
    """Off-task measures every checkpoint of every run has (``general_eval``): kl_chat, knowledge_accuracy."""
    rows = [r for run in results["runs"].values() for r in run["checkpoints"]]
    return (
        [g for g in (rows[0].get("general") or {}) if all(g in (r.get("general") or {}) for r in rows)] if rows else []
    )


def mean_prior_retention(row: dict, tasks: list[str]) -> float:
    """Mean over prior tasks of accuracy retention (tuned / base) at one checkpoint, over the tasks where it is
    defined (a task the base never answers has none); NaN where no task has one."""
    defined = [v for t in tasks if (v := row["prior"][t]["retention_accuracy"]) is not None]
    return float(np.mean(defined)) if defined else math.nan


def curve(results: dict, method: str, value) -> dict:
    """Mean and t-interval over seeds of ``value(run_name, row)`` at every step all seeds share."""
    names = runs_by_method(results)[method]
    steps = sorted(set.intersection(*(set(_steps(results, n)) for n in names)))
    rows = {n: {r["step"]: r for r in results["runs"][n]["checkpoints"]} for n in names}
    points = [t_interval([value(n, rows[n][s]) for n in names]) for s in steps]
    return {
        "steps": steps,
        "mean": [p["value"] for p in points],
        "low": [p["ci_low"] for p in points],
        "high": [p["ci_high"] for p in points],
        "n_seeds": len(names),
    }


def circuit_value(results: dict, task: str, label: str, key: str) -> float:
    """A circuit statistic of model ``label`` (``run@step``); step 0 is the base model itself."""
    if label.endswith("@0"):
        return {"retention": 1.0, "preserved_fraction": 1.0}.get(key, 0.0)
    return results["tasks"][task]["models"][label][key]["value"]


def checkpoint_rows(results: dict) -> list[dict]:
    """One row per (run, checkpoint): behaviour and each task's circuit metrics."""
    tasks = prior_tasks(results)
    general = general_measures(results)
    out = []
    for name, run in results["runs"].items():
        for r in run["checkpoints"]:
            label = f"{name}@{r['step']}"
            row = {
                "run": name,
                "method": run["method"],
                "seed": run["seed"],
                "step": r["step"],
                "target_accuracy": r["target_accuracy"],
                "kl_forward": r["kl_forward"],
                "mean_prior_retention": mean_prior_retention(r, tasks),
            }
            for g in general:
                row[g] = r["general"][g]
            for t in tasks:
                row[f"{t}_accuracy"] = r["prior"][t]["accuracy"]
                row[f"{t}_retention"] = r["prior"][t]["retention_accuracy"]
                row[f"{t}_v_circuit"] = circuit_value(results, t, label, "v_circuit")
                row[f"{t}_faithfulness_retention"] = circuit_value(results, t, label, "retention")
            out.append(row)
    return out


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of the least-squares fit y ~ 1 + x (x: [n, p])."""
    design = np.column_stack([np.ones(len(y)), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    total = ((y - y.mean()) ** 2).sum()
    return float(1 - (resid**2).sum() / total) if total > 0 else float("nan")


def forgetting_predictors(results: dict, n_boot: int = 1000, seed: int = 0) -> dict:
    """R^2 of prior-task forgetting against forward KL (RL's Razor), V(C0) (ours) and both, per task and pooled.

    Forgetting = 1 - accuracy retention of the task at a checkpoint; one point per fine-tuned checkpoint of
    every run where the retention and V(C0) are defined (a task the base never answers has no retention).
    Intervals: percentile bootstrap over checkpoints.
    """
    rows = [r for r in checkpoint_rows(results) if r["step"] > 0]
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {}
    pooled: dict[str, list] = {"forgetting": [], "kl": [], "v": []}
    for t in prior_tasks(results):
        y = 1 - np.array([r[f"{t}_retention"] for r in rows], dtype=float)  # None (no base accuracy): NaN
        kl = np.array([r["kl_forward"] for r in rows], dtype=float)
        v = np.array([r[f"{t}_v_circuit"] for r in rows], dtype=float)
        defined = np.isfinite(y) & np.isfinite(kl) & np.isfinite(v)  # points with all three
        y, kl, v = y[defined], kl[defined], v[defined]
        pooled["forgetting"] += list(y)
        pooled["kl"] += list(kl)
        pooled["v"] += list(v)
        out[t] = _fits(y, kl, v, rng, n_boot)
    out["pooled"] = _fits(np.array(pooled["forgetting"]), np.array(pooled["kl"]), np.array(pooled["v"]), rng, n_boot)
    return out


def _fits(y, kl, v, rng, n_boot) -> dict:
    predictors = {"kl": kl[:, None], "v_circuit": v[:, None], "both": np.column_stack([kl, v])}
    out: dict = {"n_points": int(len(y))}
    for name, x in predictors.items():
        value = _r2(x, y) if len(y) > x.shape[1] + 1 else float("nan")
        reps = []
        for _ in range(n_boot if len(y) > 3 else 0):
            idx = rng.integers(0, len(y), len(y))
            reps.append(_r2(x[idx], y[idx]))
        finite = [r for r in reps if not np.isnan(r)]
        low, high = np.percentile(finite, [2.5, 97.5]) if finite else (float("nan"), float("nan"))
        out[name] = {"r2": value, "ci_low": float(low), "ci_high": float(high)}
    return out


def claim_verdict(stat: dict) -> str:
    """held / reversed when the interval excludes 0 and |value| >= MIN_EFFECT; negligible when it excludes 0
    with a smaller value, or when value and interval are exactly 0 (nothing differed on any prompt or seed);
    inconclusive otherwise (also without an interval)."""
    value, low, high = (stat.get(k, np.nan) for k in ("value", "ci_low", "ci_high"))
    if value == low == high == 0:
        return CLAIM_NEGLIGIBLE
    if np.isnan(low) or np.isnan(high) or low <= 0 <= high:
        return CLAIM_UNCLEAR
    if abs(value) < MIN_EFFECT:
        return CLAIM_NEGLIGIBLE
    return CLAIM_HELD if low > 0 else CLAIM_REVERSED


def _is_plain_pair(key: str, step: int) -> bool:
    """Whether DCV pair ``key`` is plain SFT against plain RL of one seed at checkpoint ``step`` (``-s0@12``)."""
    label = pair_label(key)
    run = label.run
    plain = pair_comparison(key) == DEFAULT_COMPARISON and (run.method, run.lr, run.chain) == ("", None, None)
    return plain and label.step == step and run.seed is not None


def _accuracy_lost(results: dict, task: str, run: str) -> float:
    """Top-1 accuracy points run ``run`` lost on ``task``: its first checkpoint (the base) minus its last."""
    rows = results["runs"][run]["checkpoints"]
    return rows[0]["prior"][task]["accuracy"] - rows[-1]["prior"][task]["accuracy"]


def _paired_difference(results: dict, value) -> dict:
    """SFT minus RL of ``value(run_name)``, paired by seed, with a t-interval over seeds."""
    by_method = runs_by_method(results)
    sft = {results["runs"][n]["seed"]: n for n in by_method.get("sft", [])}
    rl = {results["runs"][n]["seed"]: n for n in by_method.get("rl", [])}
    seeds = sorted(set(sft) & set(rl))
    diffs = [value(sft[s]) - value(rl[s]) for s in seeds]
    return {**t_interval(diffs), "per_seed": diffs} if diffs else {}


def claims(results: dict) -> dict:
    """The study's two claims, tested on this run's numbers.

    1. SFT adapts faster: mean target-accuracy gain over the checkpoints (area under the adaptation curve
       divided by its length) is larger for SFT; difference paired by seed, t-interval over seeds.
    2. SFT disrupts more of the base circuits and forgets more: at the last checkpoint, per task, DCV(C0) > 0
       and SFT's prior-task accuracy drop exceeds RL's.
    With one seed the intervals come from the prompt bootstrap of that seed (circuits) or are undefined
    (behaviour), and a claim without an interval is reported inconclusive.  Verdicts: see ``_verdict`` and
    ``MIN_EFFECT``.
    """
    if not {"sft", "rl"} <= set(runs_by_method(results)):
        return {}

    def gain(name: str) -> float:
        rows = results["runs"][name]["checkpoints"]
        return float(np.mean([r["target_accuracy"] - rows[0]["target_accuracy"] for r in rows[1:]]))

    def last(name: str) -> dict:
        return results["runs"][name]["checkpoints"][-1]

    adapt = _paired_difference(results, gain)
    out: dict = {
        "adaptation": {
            "difference_sft_minus_rl": adapt,
            "verdict": claim_verdict(adapt),
            "steps_to_threshold": {n: r["steps_to_threshold"] for n, r in results["runs"].items()},
        },
        "circuits": {},
    }
    for t in prior_tasks(results):
        task = results["tasks"][t]
        final = {n: last(n)["step"] for n in results["runs"]}
        steps = set(final.values())
        step = min(steps)
        seeds_dcv = task["seeds"]["dcv"].get(f"dcv@{step}", {}).get("v_circuit")
        if seeds_dcv is None:
            pair = next((p for p in task["dcv"] if _is_plain_pair(p, step)), None)
            seeds_dcv = task["dcv"][pair]["v_circuit"] if pair is not None else {}
        forget = _paired_difference(results, partial(_accuracy_lost, results, t))
        out["circuits"][t] = {
            "step": step,
            "dcv_circuit": seeds_dcv,
            "dcv_verdict": claim_verdict(seeds_dcv),
            "forgetting_difference_sft_minus_rl": forget,
            "forgetting_verdict": claim_verdict(forget),
        }
        joint = _joint_claims(results, t, step)
        if joint:
            out["circuits"][t]["joint"] = joint
    return out


def _joint_claims(results: dict, task: str, step: int, n_boot: int = 1000, seed: int = 0) -> dict:
    """Claim 2 on the anatomy's measures (``tasks[TASK].anatomy``), all on the base circuit's evaluation prompts:
    DCV from the circuit's joint damage, V_joint(θ) = -E[m_0(x | C0 <- θ) - m_0(x)] on the anatomy's metric
    (total: C0's outputs from θ's forward pass; local: C0 computed by θ's weights), DCV_joint = V_joint(SFT) -
    V_joint(RL); and forgetting as the drop in top-1 accuracy on the same prompts, SFT minus RL.  Paired by seed
    with a t-interval over seeds when several ran, else a paired bootstrap over the prompts of the one seed."""
    anatomy = results["tasks"][task].get("anatomy") or {}
    by_method = runs_by_method(results)
    sft = {results["runs"][n]["seed"]: f"{n}@{step}" for n in by_method.get("sft", [])}
    rl = {results["runs"][n]["seed"]: f"{n}@{step}" for n in by_method.get("rl", [])}
    seeds = [s for s in sorted(set(sft) & set(rl)) if sft[s] in anatomy and rl[s] in anatomy]
    if not seeds:
        return {}
    metric = anatomy[sft[seeds[0]]]["metric"]

    def per_prompt(label: str, readout: str, key: str) -> np.ndarray:
        values = np.asarray(anatomy[label]["per_prompt"][readout][key], dtype=float)
        return -values  # damage: what the intervention (or the whole change) takes away

    def difference(readout: str, key: str) -> dict:
        diffs = [per_prompt(sft[s], readout, key) - per_prompt(rl[s], readout, key) for s in seeds]
        if len(seeds) > 1:
            return {**t_interval([float(d.mean()) for d in diffs]), "per_seed": [float(d.mean()) for d in diffs]}
        d = diffs[0]
        reps = d[bootstrap_indices(len(d), n_boot, seed)].mean(1)
        low, high = np.percentile(reps, [2.5, 97.5])
        return {"value": float(d.mean()), "ci_low": float(low), "ci_high": float(high), "n_seeds": 1}

    out: dict = {"metric": metric, "step": step}
    for name, key in (("dcv_joint_total", "joint_total/C0"), ("dcv_joint_local", "joint_local/C0")):
        out[name] = difference(metric, key)
        out[f"{name}_verdict"] = claim_verdict(out[name])
    out["forgetting_same_prompts"] = difference("correct", "change")
    out["forgetting_same_prompts_verdict"] = claim_verdict(out["forgetting_same_prompts"])
    out["change_sft_minus_rl"] = difference(metric, "change")
    return out


def target_gains(results: dict, n_boot: int = 1000, seed: int = 0) -> dict:
    """Held-out target-accuracy gain (last checkpoint minus the base, on the same questions) per method.

    ``seeds``: mean over seeds with a Student-t 95 % interval (each seed's gain is paired within that seed's
    questions); ``questions``: percentile bootstrap over each seed's evaluation questions (resampled within
    seeds, averaged over seeds), the evaluation noise alone.  Runs without per-question scores are skipped.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for method, names in runs_by_method(results).items():
        diffs = [
            np.asarray(results["runs"][n]["target_gain_per_question"], dtype=float)
            for n in names
            if results["runs"][n].get("target_gain_per_question")
        ]
        if not diffs:
            continue
        boot = np.mean([[d[rng.integers(0, len(d), len(d))].mean() for d in diffs] for _ in range(n_boot)], axis=1)
        low, high = np.percentile(boot, [2.5, 97.5])
        per_seed = [float(d.mean()) for d in diffs]
        out[method] = {
            "seeds": {**t_interval(per_seed), "per_seed": per_seed},
            "questions": {
                "value": float(np.mean(per_seed)),
                "ci_low": float(low),
                "ci_high": float(high),
                "n_questions": [len(d) for d in diffs],
            },
            "step": min(results["runs"][n]["checkpoints"][-1]["step"] for n in names),
        }
    return out


def paired_prior_tests(results: dict, n_boot: int = 1000, seed: int = 0) -> dict:
    """{task: {comparison: test}} at each run's last checkpoint on the same prior-task prompts, where the rows hold
    per-prompt records (``finetune.prior_per_prompt``): each method against the base, and RL against SFT paired by
    seed. A test is McNemar's exact test on top-1 (pairs over prompts and seeds: ``only_a``/``only_b`` count the
    prompts only the first/second model answers) and a paired bootstrap of log p(answer), second minus first
    (per prompt, mean over seeds)."""
    from forgetlens.analysis.stats import paired_models_test

    by_method = runs_by_method(results)
    out: dict = {}
    for t in prior_tasks(results):

        def prompts(run: str, first: bool = False, t: str = t) -> dict:
            rows = results["runs"][run]["checkpoints"]
            return (rows[0] if first else rows[-1])["prior"][t].get("per_prompt") or {}

        if not all(prompts(n) and prompts(n, True) for names in by_method.values() for n in names):
            continue
        seeds = {m: {results["runs"][n]["seed"]: n for n in names} for m, names in by_method.items()}
        comparisons = {f"{m} - base": [(n, True, n, False) for n in names] for m, names in by_method.items()}
        if "sft" in seeds and "rl" in seeds:
            shared = sorted(set(seeds["sft"]) & set(seeds["rl"]))
            comparisons["rl - sft"] = [(seeds["sft"][s], False, seeds["rl"][s], False) for s in shared]
        out[t] = {}
        for name, pairs in comparisons.items():
            if not pairs:
                continue
            a = [prompts(n, first) for n, first, _, _ in pairs]
            b = [prompts(n, first) for _, _, n, first in pairs]
            correct_a = np.concatenate([p["correct"] for p in a])
            correct_b = np.concatenate([p["correct"] for p in b])
            logp_a = np.mean([p["logp_answer"] for p in a], axis=0)
            logp_b = np.mean([p["logp_answer"] for p in b], axis=0)
            out[t][name] = {
                "n_pairs": len(pairs),
                **paired_models_test(correct_a, correct_b, logp_a, logp_b, n_boot, seed),
            }
    return out


def derived_results(results: dict) -> dict:
    """Everything ``results.json`` holds beyond the raw measurements."""
    curves = {}
    tasks = prior_tasks(results)
    for method in runs_by_method(results):
        curves[method] = {
            "target_accuracy": curve(results, method, lambda n, r: r["target_accuracy"]),
            "kl_forward": curve(results, method, lambda n, r: r["kl_forward"]),
            "mean_prior_retention": curve(results, method, lambda n, r: mean_prior_retention(r, tasks)),
            **{
                f"general/{g}": curve(results, method, lambda n, r, g=g: r["general"][g])
                for g in general_measures(results)
            },
            **{
                f"retention/{t}": curve(results, method, lambda n, r, t=t: r["prior"][t]["retention_accuracy"])
                for t in tasks
            },
            **{
                f"v_circuit/{t}": curve(
                    results, method, lambda n, r, t=t: circuit_value(results, t, f"{n}@{r['step']}", "v_circuit")
                )
                for t in tasks
            },
            **{
                f"faithfulness_retention/{t}": curve(
                    results, method, lambda n, r, t=t: circuit_value(results, t, f"{n}@{r['step']}", "retention")
                )
                for t in tasks
            },
        }
    return {
        "curves": curves,
        "forgetting_predictors": forgetting_predictors(results),
        "target_gain": target_gains(results),
        "claims": claims(results),
        "paired_tests": paired_prior_tests(results, int(results["config"].get("n_boot", 1000))),
    }
