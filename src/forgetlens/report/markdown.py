"""A study's results as Markdown tables (``forgetlens report RUN_DIR --markdown``), for notes and docs/results/.

The report's summary first (each claim with its verdict), then behaviour per run and checkpoint (target accuracy,
forward KL, prior accuracy retention per task), the mean over seeds and the target-accuracy gain from step 0
paired within each seed, then per task the circuit metrics at the last checkpoint: per seed with prompt-bootstrap
intervals, and averaged over seeds with Student-t intervals, DCV(C0) at equal steps and at matched accuracy / KL,
and circuit stability; the paired tests on the prior tasks' prompts and where in the text each tuned model
departs from the base.  From results.json alone, numbers written as the HTML report and the audit console write
them (``report/text.py``: the digits an interval supports, never ``-0``, ``n/a`` for what was not measured);
comparisons named in full, matched levels marked as the interpolations they are.
"""

from __future__ import annotations

from forgetlens.analysis.runs import ModelLabel, RunId, pair_comparison, pair_label
from forgetlens.analysis.seeds import t_interval
from forgetlens.report.html import divergence_table, paired_test_table, summary_sentences
from forgetlens.report.text import MIN_FIT_POINTS, interval_text, number_text

_ci = interval_text

MATCHED_NOTE = (
    "\n\\* matched levels (RUN@acc:F: where target accuracy first reaches the base's plus F of the way to the "
    "smaller of the two runs' best; RUN@kl:F: F of the smaller largest forward KL; `analysis/matched.py`) interpolate "
    "between the two checkpoints around the level (step 0 is the base); with one checkpoint after the base they "
    "rescale it."
)


def _signed(x: float) -> str:
    """A per-seed difference with its sign (``+0.625``, ``-0.031``; a zero unsigned)."""
    text = number_text(x)
    return text if text.startswith("-") or float(text) == 0 else f"+{text}"


def _model(label: str) -> str:
    """A model's label, with ``*`` when it is a matched-level interpolation (:data:`MATCHED_NOTE`)."""
    return f"{label}\\*" if ModelLabel.parse(label).level is not None else label


def comparison_label(pair: str) -> str:
    """A DCV pair key in full: ``-s0@12`` -> ``sft-s0@12 vs rl-s0@12``; ``dcv@12`` (over seeds) -> ``sft@12 vs
    rl@12, mean over seeds``; ``replay:rl:-s0@12`` -> ``replay-s0@12 vs rl-s0@12``."""
    over_seeds = pair.startswith("dcv")
    key = pair.removeprefix("dcv")
    compared, rest = pair_comparison(key), str(pair_label(key))
    text = f"{compared.first}{rest} vs {compared.second}{rest}"
    if over_seeds:
        return f"{text}, mean over seeds"
    return text + ("\\*" if pair_label(key).level is not None else "")


def markdown_tables(results: dict) -> str:
    """Every table of the module docstring, as one Markdown text."""
    lines: list[str] = []
    out = lines.append  # each table line by line, as it reads
    tasks = list(results["tasks"])
    out("### What the numbers say (the report's summary: each claim with its verdict)\n")
    lines.extend(f"- {sentence}" for sentence in summary_sentences(results))
    out("\n### Behaviour at every checkpoint\n")
    out("| run | step | target acc | KL(base‖tuned) | " + " | ".join(f"{t} ret." for t in tasks) + " |")
    out("|---" * (4 + len(tasks)) + "|")
    for name, run in results["runs"].items():
        for r in run["checkpoints"]:
            out(
                f"| {name} | {r['step']} | {number_text(r['target_accuracy'])} | {number_text(r['kl_forward'])} | "
                + " | ".join(number_text(r["prior"][t]["retention_accuracy"]) for t in tasks)
                + " |"
            )
    out("\n### Mean over seeds (Student-t 95 % interval)\n")
    out("| method | step | target acc | KL | mean prior retention |")
    out("|---|---|---|---|---|")
    for method, curves in results["curves"].items():
        for i, step in enumerate(curves["target_accuracy"]["steps"]):
            cells = []
            for key in ("target_accuracy", "kl_forward", "mean_prior_retention"):
                c = curves[key]
                cells.append(_ci({"value": c["mean"][i], "ci_low": c["low"][i], "ci_high": c["high"][i]}))
            out(f"| {method} | {step} | " + " | ".join(cells) + " |")
    general = [k for k in next(iter(results["curves"].values())) if k.startswith("general/")]
    if general:
        out("\n### Off-task drift, mean over seeds (Student-t 95 % interval)\n")
        out("| method | step | " + " | ".join(g.removeprefix("general/") for g in general) + " |")
        out("|---|---" + "|---" * len(general) + "|")
        for method, curves in results["curves"].items():
            for i, step in enumerate(curves["target_accuracy"]["steps"]):
                cells = [
                    _ci({"value": curves[g]["mean"][i], "ci_low": curves[g]["low"][i], "ci_high": curves[g]["high"][i]})
                    for g in general
                ]
                out(f"| {method} | {step} | " + " | ".join(cells) + " |")
    if results.get("target_gain"):
        out("\n### Held-out target gain at the last checkpoint (results.json `target_gain`)\n")
        out("| method | step | over seeds (t) | per seed | over questions (bootstrap) |")
        out("|---|---|---|---|---|")
        for method, g in results["target_gain"].items():
            out(
                f"| {method} | {g['step']} | {_ci(g['seeds'])} | "
                + ", ".join(map(_signed, g["seeds"]["per_seed"]))
                + f" | {_ci(g['questions'])} |"
            )
    out("\n### Target-accuracy gain from step 0, paired within each seed (Student-t 95 % interval)\n")
    out("| method | step | gain | per seed |")
    out("|---|---|---|---|")
    gains: dict[tuple[str, int], list[float]] = {}
    for name, run in results["runs"].items():
        method = RunId.parse(name).group
        start = run["checkpoints"][0]["target_accuracy"]
        for r in run["checkpoints"][1:]:
            gains.setdefault((method, r["step"]), []).append(r["target_accuracy"] - start)
    for (method, step), values in gains.items():
        out(f"| {method} | {step} | {_ci(t_interval(values))} | " + ", ".join(map(_signed, values)) + " |")
    out("\n### Per-task accuracy retention and V(C0) at the last step, mean over seeds\n")
    out(
        "| method | step | "
        + " | ".join(f"{t} ret." for t in tasks)
        + " | "
        + " | ".join(f"{t} V(C0)" for t in tasks)
        + " |"
    )
    out("|---" * (2 + 2 * len(tasks)) + "|")
    for method, curves in results["curves"].items():
        cells = []
        for key in [f"retention/{t}" for t in tasks] + [f"v_circuit/{t}" for t in tasks]:
            c = curves[key]
            cells.append(_ci({"value": c["mean"][-1], "ci_low": c["low"][-1], "ci_high": c["high"][-1]}))
        out(f"| {method} | {curves['target_accuracy']['steps'][-1]} | " + " | ".join(cells) + " |")
    last = min(run["checkpoints"][-1]["step"] for run in results["runs"].values())
    out(f"\n### Base circuits at step {last}\n")
    out("| task | k | stability (Jaccard) | model | V(C0) | V_total(C0) | retention | preserved fraction |")
    out("|---|---|---|---|---|---|---|---|")
    for t in tasks:
        task = results["tasks"][t]
        stab = task["circuit_stability"]
        rows = [(label, s) for label, s in task["models"].items() if ModelLabel.parse(label).step == last]
        rows += [
            (f"{g}, mean over seeds", s) for g, s in task["seeds"]["models"].items() if ModelLabel.parse(g).step == last
        ]
        for label, s in rows:
            out(
                f"| {t} | {task['circuit']['k']} | {number_text(stab['mean_jaccard'])} | {label} | "
                f"{_ci(s.get('v_circuit'))} | "
                f"{_ci(s.get('v_circuit_total'))} | {_ci(s.get('retention'))} | {_ci(s.get('preserved_fraction'))} |"
            )
    out("\n### DCV(C0) = V_SFT(C0) - V_RL(C0)\n")
    out("Positive = SFT damages more, in both forms: V(C0) as SFT - RL, faithfulness retention as RL - SFT.\n")
    out("| task | comparison | DCV(C0) | DCV retention (RL - SFT: positive = SFT kept less) | heads with q < 0.05 |")
    out("|---|---|---|---|---|")
    for t in tasks:
        task = results["tasks"][t]
        for pair, s in task["dcv"].items():
            q = task["dcv_test"][pair]["q_value_bh"]
            n_sig = sum(v < 0.05 for row in q for v in row)
            out(f"| {t} | {comparison_label(pair)} | {_ci(s['v_circuit'])} | {_ci(s['retention'])} | {n_sig} |")
        for group, s in task["seeds"]["dcv"].items():
            out(f"| {t} | {comparison_label(group)} | {_ci(s.get('v_circuit'))} | {_ci(s.get('retention'))} | |")
    out("\n### Forgetting predictors (R² with bootstrap CI over checkpoints)\n")
    out("| task | n | KL | V(C0) | both |")
    out("|---|---|---|---|---|")
    for t, f in results["forgetting_predictors"].items():
        if f["n_points"] < MIN_FIT_POINTS:  # as the HTML report: a fit to fewer points is not shown
            cells = [f"not estimated (fewer than {MIN_FIT_POINTS} points)"] + [""] * 2
        else:
            cells = [
                _ci({"value": f[k]["r2"], "ci_low": f[k]["ci_low"], "ci_high": f[k]["ci_high"]})
                for k in ("kl", "v_circuit", "both")
            ]
        out(f"| {t} | {f['n_points']} | " + " | ".join(cells) + " |")
    for title, table in (
        ("Paired tests on the same prior-task prompts, last checkpoint (`paired_tests`)", paired_test_table),
        ("Where in the text each tuned model departs from the base (`runs[RUN].divergence`)", divergence_table),
    ):
        made = table(results)
        if made is not None:
            out(f"\n### {title}\n")
            lines.extend(_table(*made))
    if any(ModelLabel.parse(label).level is not None for t in tasks for label in results["tasks"][t]["models"]):
        out(MATCHED_NOTE)
    return "\n".join(lines)


def _cell(text: str) -> str:
    """A table cell's text with Markdown's table syntax escaped (a chat token such as ``<|im_end|>`` has pipes)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(map(_cell, head)) + " |",
        "|---" * len(head) + "|",
        *("| " + " | ".join(map(_cell, row)) + " |" for row in rows),
    ]
