"""report.html: one self-contained page (figures inlined as base64 PNG), built from results.json alone."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from forgetlens.metrics.summary import GENERAL_LABELS, MIN_EFFECT, prior_tasks, runs_by_method
from forgetlens.report.figures import FIGURES
from forgetlens.utils import atomic_write_text


def _ci(stat: dict | None, fmt: str = "{:.3f}") -> str:
    if not stat:
        return "n/a"
    low, high = stat.get("ci_low", float("nan")), stat.get("ci_high", float("nan"))
    value = fmt.format(stat["value"])
    if low is None or np.isnan(low):
        return value
    return f"{value} [{fmt.format(low)}, {fmt.format(high)}]"


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


def _methods_table(results: dict) -> str:
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
                f"<tr><td>{html.escape(method)}</td><td>{step}</td><td>{cell(acc, i)}</td>"
                f"<td>{cell(ret, i)}</td><td>{cell(curves['kl_forward'], i)}</td>"
                + "".join(f"<td>{cell(curves[g], i)}</td>" for g in general)
                + f"<td>{acc['n_seeds']}</td></tr>"
            )
    head = (
        "<tr><th>method</th><th>step</th><th>target accuracy</th><th>mean prior retention</th>"
        + "".join(f"<th>{GENERAL_LABELS.get(g, g)}</th>" for g in ["kl_forward"] + general)
        + "<th>seeds</th></tr>"
    )
    return f'<table id="methods">{head}{"".join(rows)}</table>'


def _circuit_table(results: dict) -> str:
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
            rows.append(
                f"<tr><td>{t}</td><td>{c['k']}</td><td>{c['faithfulness']:.2f}</td><td>{method}@{last}</td>"
                + "".join(f"<td>{x}</td>" for x in cells)
                + "</tr>"
            )
    head = (
        "<tr><th>task</th><th>|C0|</th><th>F0(C0)</th><th>model</th><th>V(C0)</th>"
        "<th>faithfulness retention</th><th>preserved fraction</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _benchmark_table(results: dict) -> str:
    """Standard-benchmark scores of the base and each run's last checkpoint, with the change from the base."""
    scores = (results.get("benchmarks") or {}).get("scores") or {}
    base = scores.get("base", {})
    if not base:
        return ""
    tasks = sorted(base)
    head = "<tr><th>model</th>" + "".join(f"<th>{html.escape(t)} ({base[t]['metric']})</th>" for t in tasks) + "</tr>"
    rows = []
    for label, row in scores.items():
        cells = []
        for t in tasks:
            if t not in row:
                cells.append("n/a")
            elif label == "base":
                cells.append(f"{row[t]['score']:.3f}")
            else:
                cells.append(f"{row[t]['score']:.3f} ({row[t]['score'] - base[t]['score']:+.3f})")
        rows.append(f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    n = ", ".join(f"{t}: n={base[t]['n']}" for t in tasks)
    return (
        f"<h2>Standard benchmarks (lm-eval; change from the base in brackets)</h2>"
        f'<table id="benchmarks">{head}{"".join(rows)}</table><p>{html.escape(n)}</p>'
    )


def render(results: dict) -> str:
    parts = [f"<li>{html.escape(line)}</li>" for line in summary_lines(results)]
    figures = []
    for key, (title, fn) in FIGURES.items():
        png = fn(results)
        if png is None:
            continue
        data = base64.b64encode(png).decode()
        figures.append(
            f'<h2>{html.escape(title)}</h2><img id="{key}" alt="{html.escape(title)}" '
            f'src="data:image/png;base64,{data}">'
        )
    cfg = results["config"]
    meta = (
        f"model <code>{html.escape(str(cfg['model']))}</code>, methods {', '.join(cfg['methods'])}, "
        f"seeds {results['seeds']}, {cfg['finetune']['steps']} steps, n_boot {cfg['n_boot']}, "
        f"forgetlens {results['versions'].get('forgetlens')}, torch {results['versions'].get('torch')}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>forgetlens report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
code {{ background: #f4f4f4; }}
</style></head><body>
<h1>forgetlens: what fine-tuning did to the base model</h1>
<p>{meta}</p>
<h2>Summary</h2><ul id="summary">{"".join(parts)}</ul>
<h2>Every method over training (mean [95 % interval over seeds])</h2>{_methods_table(results)}
<h2>Base circuits at the last checkpoint</h2>{_circuit_table(results)}
{_benchmark_table(results)}
{"".join(figures)}
<p>Numbers behind every figure: <code>results.json</code> (schema {results["schema_version"]}),
<code>checkpoints.csv</code>, <code>per_head.csv</code>.</p>
</body></html>
"""


def write_report(results: dict, path: Path) -> None:
    atomic_write_text(path, render(results))
