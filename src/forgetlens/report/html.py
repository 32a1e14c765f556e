"""report.html: one self-contained page (figures inlined as base64 PNG), built from results.json alone."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from forgetlens.metrics.summary import GENERAL_LABELS, MIN_EFFECT, prior_tasks, runs_by_method
from forgetlens.report.anatomy import anatomy_lines
from forgetlens.report.figures import FIGURES
from forgetlens.report.own_circuits import own_circuit_differences, own_circuit_table
from forgetlens.report.text import interval_text as _ci
from forgetlens.utils import atomic_write_text


def summary_lines(results: dict) -> list[str]:
    """The findings in words, generated from the numbers."""
    lines = []
    threshold = results["accuracy_threshold"]
    curves = results["curves"]
    for method, names in runs_by_method(results).items():
        reached = [results["runs"][n]["steps_to_threshold"] for n in names]
        hit = [s for s in reached if s is not None]
        acc = curves[method]["target_accuracy"]
        start, end = acc["mean"][0], acc["mean"][-1]
        when = (
            f"reached {threshold:.0%} target accuracy in {np.mean(hit):.0f} steps on average ({len(hit)} of "
            f"{len(names)} seeds)"
            if hit
            else f"never reached {threshold:.0%} target accuracy"
        )
        lines.append(
            f"{method.upper()} {when}; held-out target accuracy went from {start:.2f} to {end:.2f} "
            f"(mean over {len(names)} seed(s)), forward KL at the end {curves[method]['kl_forward']['mean'][-1]:.3f}."
        )
    for method, gain in (results.get("target_gain") or {}).items():
        low = gain["seeds"]["ci_low"] if gain["seeds"]["n_seeds"] > 1 else gain["questions"]["ci_low"]
        lines.append(
            f"{method.upper()}'s held-out target gain at step {gain['step']} (last checkpoint minus base, "
            f"paired within seed): {_ci(gain['seeds'])} over seeds; {_ci(gain['questions'])} over the "
            f"evaluation questions -> {'adapted' if low > 0 else 'no clear adaptation'}."
        )
    claims = results.get("claims") or {}
    if claims:
        a = claims["adaptation"]
        lines.append(
            f"Claim 1, SFT adapts faster than RL: mean target-accuracy gain over checkpoints, SFT minus RL = "
            f"{_ci(a['difference_sft_minus_rl'])} -> {a['verdict']}."
        )
        for t, c in claims["circuits"].items():
            lines.append(
                f"Claim 2 on {t} (step {c['step']}): DCV(C0) = V_SFT - V_RL = {_ci(c['dcv_circuit'])} -> "
                f"{c['dcv_verdict']}; forgetting SFT minus RL = "
                f"{_ci(c['forgetting_difference_sft_minus_rl'])} -> {c['forgetting_verdict']}."
            )
            joint = c.get("joint")
            if joint:
                lines.append(
                    f"  On the base circuit's own prompts ({joint['metric']}): DCV from C0's joint damage = "
                    f"{_ci(joint['dcv_joint_total'])} (total) -> {joint['dcv_joint_total_verdict']}, "
                    f"{_ci(joint['dcv_joint_local'])} (C0's own weights) -> {joint['dcv_joint_local_verdict']}; "
                    f"top-1 accuracy lost, SFT minus RL = {_ci(joint['forgetting_same_prompts'])} -> "
                    f"{joint['forgetting_same_prompts_verdict']}."
                )
            for method in runs_by_method(results):
                r = curves[method][f"faithfulness_retention/{t}"]["mean"][-1]
                lines.append(f"  {method.upper()}'s base-circuit faithfulness retention for {t} ended at {r:.2f}.")
    fits = results["forgetting_predictors"]["pooled"]
    lines.append(
        f"Forgetting across all checkpoints and tasks: R^2 against KL = {fits['kl']['r2']:.2f} "
        f"[{fits['kl']['ci_low']:.2f}, {fits['kl']['ci_high']:.2f}], against V(C0) = "
        f"{fits['v_circuit']['r2']:.2f} [{fits['v_circuit']['ci_low']:.2f}, {fits['v_circuit']['ci_high']:.2f}],"
        f" both = {fits['both']['r2']:.2f} (n = {fits['n_points']})."
    )
    lines.append(
        "Intervals: 95 %; over seeds (Student t) when several seeds ran, otherwise the paired prompt "
        "bootstrap of one seed (circuit metrics) or none (behaviour, reported inconclusive). "
        f"'negligible': the interval excludes 0 but the difference is below {MIN_EFFECT} "
        "(1 point of accuracy or retention, 1 % of a task's total effect)."
    )
    return lines


def summary_table(results: dict) -> str:
    """A plain-text table for the terminal: per method, the last checkpoint's behaviour and circuits."""
    tasks = prior_tasks(results)
    head = f"{'method':<14}{'step':>6}{'target acc':>12}{'KL':>8}{'retention':>11}" + "".join(
        f"{'V(C0) ' + t[:10]:>18}" for t in tasks
    )
    lines = [head, "-" * len(head)]
    for method, curves in results["curves"].items():
        step = curves["target_accuracy"]["steps"][-1]
        row = (
            f"{method:<14}{step:>6}{curves['target_accuracy']['mean'][-1]:>12.3f}"
            f"{curves['kl_forward']['mean'][-1]:>8.3f}{curves['mean_prior_retention']['mean'][-1]:>11.3f}"
        )
        row += "".join(f"{curves[f'v_circuit/{t}']['mean'][-1]:>18.4f}" for t in tasks)
        lines.append(row)
    return "\n".join(lines)


Table = tuple[list[str], list[list[str]]]
"""A table as (header cells, rows of cells): plain text, escaped by the template."""


def _methods_table(results: dict) -> Table:
    """Per method and checkpoint: target accuracy and mean prior retention, mean [95 % t-interval] over seeds."""

    def cell(c: dict, i: int) -> str:
        if c["n_seeds"] > 1 and c["low"][i] is not None:
            return f"{c['mean'][i]:.3f} [{c['low'][i]:.3f}, {c['high'][i]:.3f}]"
        return f"{c['mean'][i]:.3f}"

    rows = []
    general = [k for k in next(iter(results["curves"].values())) if k.startswith("general/")]
    for method, curves in results["curves"].items():
        acc, ret = curves["target_accuracy"], curves["mean_prior_retention"]
        for i, step in enumerate(acc["steps"]):
            rows.append(
                [method, str(step), cell(acc, i), cell(ret, i), cell(curves["kl_forward"], i)]
                + [cell(curves[g], i) for g in general]
                + [str(acc["n_seeds"])]
            )
    head = ["method", "step", "target accuracy", "mean prior retention"]
    head += [str(GENERAL_LABELS.get(g, g)) for g in ["kl_forward"] + general] + ["seeds"]
    return head, rows


def _circuit_table(results: dict) -> Table:
    rows = []
    for t in prior_tasks(results):
        task = results["tasks"][t]
        c = task["circuit"]
        for method, names in runs_by_method(results).items():
            last = results["runs"][names[0]]["checkpoints"][-1]["step"]
            agg = task["seeds"]["models"].get(f"{method}@{last}")
            single = task["models"].get(f"{names[0]}@{last}")
            src = agg if agg else single
            cells = [_ci(src.get(k)) if src else "n/a" for k in ("v_circuit", "retention", "preserved_fraction")]
            rows.append([t, str(c["k"]), f"{c['faithfulness']:.2f}", f"{method}@{last}"] + cells)
    head = ["task", "|C0|", "F0(C0)", "model", "V(C0)", "faithfulness retention", "preserved fraction"]
    return head, rows


def _benchmark_table(results: dict) -> tuple[Table, str] | None:
    """Standard-benchmark scores of the base and each run's last checkpoint, with the change from the base, and a
    line giving each benchmark's item count; None when no benchmark ran."""
    scores = (results.get("benchmarks") or {}).get("scores") or {}
    base = scores.get("base", {})
    if not base:
        return None
    tasks = sorted(base)
    head = ["model"] + [f"{t} ({base[t]['metric']})" for t in tasks]
    rows = []
    for label, row in scores.items():
        cells = [label]
        for t in tasks:
            if t not in row:
                cells.append("n/a")
            elif label == "base":
                cells.append(f"{row[t]['score']:.3f}")
            else:
                cells.append(f"{row[t]['score']:.3f} ({row[t]['score'] - base[t]['score']:+.3f})")
        rows.append(cells)
    return (head, rows), ", ".join(f"{t}: n={base[t]['n']}" for t in tasks)


def _environment():
    """The report's template environment: every value is HTML-escaped unless the template says otherwise, and
    the template says so nowhere (the figures are base64 text, which escaping leaves unchanged)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("forgetlens.report", "templates"), autoescape=True, undefined=StrictUndefined
    )


def render(results: dict) -> str:
    """report.html's text for ``results`` (a results.json that passed :func:`pipeline.results.read_results`)."""
    figures = []
    for key, (title, fn) in FIGURES.items():
        png = fn(results)
        if png is not None:
            figures.append({"id": key, "title": title, "data": base64.b64encode(png).decode()})
    cfg = results["config"]
    meta = [
        ("model", cfg["model"]),
        ("methods", ", ".join(map(str, cfg["methods"]))),
        ("seeds", ", ".join(map(str, results["seeds"]))),
        ("steps", cfg["finetune"]["steps"]),
        ("n_boot", cfg["n_boot"]),
        ("forgetlens", results["versions"].get("forgetlens")),
        ("torch", results["versions"].get("torch")),
    ]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            meta=meta,
            summary=summary_lines(results),
            methods=_methods_table(results),
            circuits=_circuit_table(results),
            benchmarks=_benchmark_table(results),
            own_circuits=own_circuit_table(results),
            own_differences=own_circuit_differences(results),
            figures=figures,
            schema_version=results["schema_version"],
            anatomy=[
                anatomy_lines(t, label, a)
                for t in prior_tasks(results)
                for label, a in (results["tasks"][t].get("anatomy") or {}).items()
            ],
        )
    )


def write_report(results: dict, path: Path) -> None:
    atomic_write_text(path, render(results))
