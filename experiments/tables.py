"""Markdown tables of a study's results, as pasted into the notes and docs/results/.

    python experiments/tables.py RUN_DIR

Behaviour per run and checkpoint (target accuracy, forward KL, prior accuracy retention per task), the mean over
seeds and the target-accuracy gain from step 0 paired within each seed, then per
task the circuit metrics at the last checkpoint: per seed with prompt-bootstrap intervals, and averaged over
seeds with Student-t intervals, DCV(C0) at equal steps and at matched accuracy / KL, and circuit stability.
"""

from __future__ import annotations

import sys
from pathlib import Path

from forgetlens.analysis.seeds import seed_group, t_interval
from forgetlens.pipeline.results import read_results


def ci(stat: dict | None) -> str:
    if not stat:
        return "n/a"
    low, high = stat.get("ci_low"), stat.get("ci_high")
    if low is None or low != low:
        return f"{stat['value']:.3f}"
    return f"{stat['value']:.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    results = read_results(Path(sys.argv[1]) / "results.json")
    tasks = list(results["tasks"])
    print("### Behaviour at every checkpoint\n")
    print("| run | step | target acc | KL(base‖tuned) | " + " | ".join(f"{t} ret." for t in tasks) + " |")
    print("|---" * (4 + len(tasks)) + "|")
    for name, run in results["runs"].items():
        for r in run["checkpoints"]:
            print(
                f"| {name} | {r['step']} | {r['target_accuracy']:.3f} | {r['kl_forward']:.3f} | "
                + " | ".join(f"{r['prior'][t]['retention_accuracy']:.3f}" for t in tasks)
                + " |"
            )
    print("\n### Mean over seeds (Student-t 95 % interval)\n")
    print("| method | step | target acc | KL | mean prior retention |")
    print("|---|---|---|---|---|")
    for method, curves in results["curves"].items():
        for i, step in enumerate(curves["target_accuracy"]["steps"]):
            cells = []
            for key in ("target_accuracy", "kl_forward", "mean_prior_retention"):
                c = curves[key]
                cells.append(ci({"value": c["mean"][i], "ci_low": c["low"][i], "ci_high": c["high"][i]}))
            print(f"| {method} | {step} | " + " | ".join(cells) + " |")
    general = [k for k in next(iter(results["curves"].values())) if k.startswith("general/")]
    if general:
        print("\n### Off-task drift, mean over seeds (Student-t 95 % interval)\n")
        print("| method | step | " + " | ".join(g.removeprefix("general/") for g in general) + " |")
        print("|---|---" + "|---" * len(general) + "|")
        for method, curves in results["curves"].items():
            for i, step in enumerate(curves["target_accuracy"]["steps"]):
                cells = [
                    ci({"value": curves[g]["mean"][i], "ci_low": curves[g]["low"][i], "ci_high": curves[g]["high"][i]})
                    for g in general
                ]
                print(f"| {method} | {step} | " + " | ".join(cells) + " |")
    if results.get("target_gain"):
        print("\n### Held-out target gain at the last checkpoint (results.json `target_gain`)\n")
        print("| method | step | over seeds (t) | per seed | over questions (bootstrap) |")
        print("|---|---|---|---|---|")
        for method, g in results["target_gain"].items():
            print(
                f"| {method} | {g['step']} | {ci(g['seeds'])} | "
                + ", ".join(f"{v:+.3f}" for v in g["seeds"]["per_seed"])
                + f" | {ci(g['questions'])} |"
            )
    print("\n### Target-accuracy gain from step 0, paired within each seed (Student-t 95 % interval)\n")
    print("| method | step | gain | per seed |")
    print("|---|---|---|---|")
    gains: dict[tuple[str, int], list[float]] = {}
    for name, run in results["runs"].items():
        method = seed_group(name)[0] if seed_group(name) else name
        start = run["checkpoints"][0]["target_accuracy"]
        for r in run["checkpoints"][1:]:
            gains.setdefault((method, r["step"]), []).append(r["target_accuracy"] - start)
    for (method, step), values in gains.items():
        print(f"| {method} | {step} | {ci(t_interval(values))} | " + ", ".join(f"{v:+.3f}" for v in values) + " |")
    print("\n### Per-task accuracy retention and V(C0) at the last step, mean over seeds\n")
    print(
        "| method | step | "
        + " | ".join(f"{t} ret." for t in tasks)
        + " | "
        + " | ".join(f"{t} V(C0)" for t in tasks)
        + " |"
    )
    print("|---" * (2 + 2 * len(tasks)) + "|")
    for method, curves in results["curves"].items():
        cells = []
        for key in [f"retention/{t}" for t in tasks] + [f"v_circuit/{t}" for t in tasks]:
            c = curves[key]
            cells.append(ci({"value": c["mean"][-1], "ci_low": c["low"][-1], "ci_high": c["high"][-1]}))
        print(f"| {method} | {curves['target_accuracy']['steps'][-1]} | " + " | ".join(cells) + " |")
    last = min(run["checkpoints"][-1]["step"] for run in results["runs"].values())
    print(f"\n### Base circuits at step {last}\n")
    print("| task | k | stability (Jaccard) | model | V(C0) | V_total(C0) | retention | preserved fraction |")
    print("|---|---|---|---|---|---|---|---|")
    for t in tasks:
        task = results["tasks"][t]
        stab = task["circuit_stability"]
        rows = [(label, s) for label, s in task["models"].items() if label.endswith(f"@{last}")]
        rows += [(f"{g} (seeds)", s) for g, s in task["seeds"]["models"].items() if g.endswith(f"@{last}")]
        for label, s in rows:
            print(
                f"| {t} | {task['circuit']['k']} | {stab['mean_jaccard']:.2f} | {label} | {ci(s.get('v_circuit'))} | "
                f"{ci(s.get('v_circuit_total'))} | {ci(s.get('retention'))} | {ci(s.get('preserved_fraction'))} |"
            )
    print("\n### DCV(C0) = V_SFT(C0) - V_RL(C0)\n")
    print("| task | comparison | DCV(C0) | DCV retention (SFT - RL) | heads with q < 0.05 |")
    print("|---|---|---|---|---|")
    for t in tasks:
        task = results["tasks"][t]
        for pair, s in task["dcv"].items():
            q = task["dcv_test"][pair]["q_value_bh"]
            n_sig = sum(v < 0.05 for row in q for v in row)
            print(f"| {t} | {pair} | {ci(s['v_circuit'])} | {ci(s['retention'])} | {n_sig} |")
        for group, s in task["seeds"]["dcv"].items():
            print(f"| {t} | {group} (mean over seeds) | {ci(s.get('v_circuit'))} | {ci(s.get('retention'))} | |")
    print("\n### Forgetting predictors (R² with bootstrap CI over checkpoints)\n")
    print("| task | n | KL | V(C0) | both |")
    print("|---|---|---|---|---|")
    for t, f in results["forgetting_predictors"].items():
        cells = [f"{f[k]['r2']:.2f} [{f[k]['ci_low']:.2f}, {f[k]['ci_high']:.2f}]" for k in ("kl", "v_circuit", "both")]
        print(f"| {t} | {f['n_points']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
