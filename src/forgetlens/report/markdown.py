"""A study's results as Markdown tables (``forgetlens report RUN_DIR --markdown``), for notes and docs/results/.

Behaviour per run and checkpoint (target accuracy, forward KL, prior accuracy retention per task), the mean over
seeds and the target-accuracy gain from step 0 paired within each seed, then per task the circuit metrics at the
last checkpoint: per seed with prompt-bootstrap intervals, and averaged over seeds with Student-t intervals,
DCV(C0) at equal steps and at matched accuracy / KL, and circuit stability.  Numbers to 3 decimals, from
results.json alone.
"""

from __future__ import annotations

from forgetlens.analysis.runs import ModelLabel, RunId
from forgetlens.analysis.seeds import t_interval
from forgetlens.report.text import interval_text


def _ci(stat: dict | None) -> str:
    return interval_text(stat, "{:.3f}")


def markdown_tables(results: dict) -> str:
    """Every table of the module docstring, as one Markdown text."""
    lines: list[str] = []
    out = lines.append  # each table line by line, as it reads
    tasks = list(results["tasks"])
    out("### Behaviour at every checkpoint\n")
    out("| run | step | target acc | KL(base‖tuned) | " + " | ".join(f"{t} ret." for t in tasks) + " |")
    out("|---" * (4 + len(tasks)) + "|")
    for name, run in results["runs"].items():
        for r in run["checkpoints"]:
            out(
                f"| {name} | {r['step']} | {r['target_accuracy']:.3f} | {r['kl_forward']:.3f} | "
                + " | ".join(f"{r['prior'][t]['retention_accuracy']:.3f}" for t in tasks)
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
                + ", ".join(f"{v:+.3f}" for v in g["seeds"]["per_seed"])
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
        out(f"| {method} | {step} | {_ci(t_interval(values))} | " + ", ".join(f"{v:+.3f}" for v in values) + " |")
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
        rows += [(f"{g} (seeds)", s) for g, s in task["seeds"]["models"].items() if ModelLabel.parse(g).step == last]
        for label, s in rows:
            out(
                f"| {t} | {task['circuit']['k']} | {stab['mean_jaccard']:.2f} | {label} | {_ci(s.get('v_circuit'))} | "
                f"{_ci(s.get('v_circuit_total'))} | {_ci(s.get('retention'))} | {_ci(s.get('preserved_fraction'))} |"
            )
    out("\n### DCV(C0) = V_SFT(C0) - V_RL(C0)\n")
    out("| task | comparison | DCV(C0) | DCV retention (RL - SFT: positive = SFT kept less) | heads with q < 0.05 |")
    out("|---|---|---|---|---|")
    for t in tasks:
        task = results["tasks"][t]
        for pair, s in task["dcv"].items():
            q = task["dcv_test"][pair]["q_value_bh"]
            n_sig = sum(v < 0.05 for row in q for v in row)
            out(f"| {t} | {pair} | {_ci(s['v_circuit'])} | {_ci(s['retention'])} | {n_sig} |")
        for group, s in task["seeds"]["dcv"].items():
            out(f"| {t} | {group} (mean over seeds) | {_ci(s.get('v_circuit'))} | {_ci(s.get('retention'))} | |")
    out("\n### Forgetting predictors (R² with bootstrap CI over checkpoints)\n")
    out("| task | n | KL | V(C0) | both |")
    out("|---|---|---|---|---|")
    for t, f in results["forgetting_predictors"].items():
        cells = [f"{f[k]['r2']:.2f} [{f[k]['ci_low']:.2f}, {f[k]['ci_high']:.2f}]" for k in ("kl", "v_circuit", "both")]
        out(f"| {t} | {f['n_points']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
