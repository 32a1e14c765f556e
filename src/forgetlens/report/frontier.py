"""frontier.html and the console summary of ``forgetlens frontier``, from frontier.json alone.

The page leads with the trade-off: each arm's configurations (target accuracy against mean prior-task retention)
and its frontier, then the verdicts in words, each number named for what it is (accuracy points, retention
ratio, nats) and pointing at the table it comes from; then the tables, the per-task frontiers, the forgetting
predictors and RL's reward signal.  Every value goes through Jinja's autoescape.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from forgetlens.analysis.frontier import reward_signal  # noqa: E402
from forgetlens.report.figures import COLORS, MARKERS  # noqa: E402
from forgetlens.report.text import interval_text, number_text, p_text  # noqa: E402
from forgetlens.utils import atomic_write_text  # noqa: E402

MEAN = "mean"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _configs(results: dict, arm: str) -> list[dict]:
    return [c for c in results["configs"] if c["arm"] == arm]


def _frontier_line(configs: list[dict], base: dict, key: str) -> tuple[list[float], list[float]]:
    """The frontier F(a) of ``configs`` (and the base) as a step line: retention of the best configuration at or
    beyond each accuracy."""
    points = [(base["accuracy"], 1.0)] + [
        (c["accuracy"], c["retention"][key]) for c in configs if _finite(c["retention"].get(key))
    ]
    xs = sorted({a for a, _ in points})
    ys = [max(r for a, r in points if a >= x) for x in xs]
    return xs, ys


def tradeoff_figure(results: dict, key: str = MEAN, ax=None) -> tuple[str | None, list[str]]:
    """The trade-off: every configuration of every arm and each arm's frontier; returns (PNG, legend)."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(7.2, 4.6))
    legend = []
    base = results["base"]
    for arm in results["arms"]:
        configs = _configs(results, arm)
        color, marker = COLORS.get(arm, "#555555"), MARKERS.get(arm, "o")
        ax.scatter(
            [c["accuracy"] for c in configs],
            [c["retention"][key] for c in configs],
            color=color,
            marker=marker,
            alpha=0.35,
            s=22,
        )
        xs, ys = _frontier_line(configs, base, key)
        # F(a) on (x_i, x_i+1] is the best configuration at x_i+1 or beyond: the step is drawn before each point
        (line,) = ax.step(xs, ys, where="pre", color=color, lw=2, label=f"{arm} frontier ({len(configs)} points)")
        legend.append(line.get_label())
    ax.scatter([base["accuracy"]], [1.0], color="black", marker="*", s=90, zorder=5, label="base model")
    legend.append("base model")
    top = ax.get_ylim()[1]
    for name, level in (results.get("comparison") or {}).get("levels", {}).items():
        ax.axvline(level, color="#999999", ls=":", lw=1)
        ax.annotate(name, (level, top), fontsize=7, color="#666666", rotation=90, va="top", ha="right")
    ax.set_xlabel("held-out target accuracy")
    ax.set_ylabel(retention_words(results) + (" (mean over tasks)" if key == MEAN else f" ({key})"))
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    if not own:
        return None, legend
    return _png(fig), legend


def per_task_figure(results: dict) -> str:
    tasks = results["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        tradeoff_figure(results, task, ax)
        ax.set_title(task, fontsize=10)
        ax.set_ylabel(retention_words(results))
        ax.get_legend().remove()
    return _png(fig)


def kl_figure(results: dict) -> str | None:
    pred = (results.get("predictors") or {}).get("all")
    if not pred or not pred["points"]:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    xs = [p["kl"] for p in pred["points"]]
    ys = [p["forgetting"] for p in pred["points"]]
    ax.scatter(xs, ys, s=14, alpha=0.6, color="#444444")
    ax.set_xlabel("forward KL(base || tuned) on the target, nats per completion")
    ax.set_ylabel(f"forgetting: {forgetting_words(results)}\n(mean over prior tasks)", fontsize=8)
    ax.set_title(f"R^2 of forgetting on KL: {interval_text(pred['r2_kl'])} ({pred['n_points']} points)", fontsize=9)
    ax.axhline(0, color="#999999", lw=0.8)
    ax.grid(alpha=0.3)
    return _png(fig)


def signal_figure(results: dict) -> str | None:
    runs = {n: r for n, r in results["runs"].items() if r["zero_signal_share"]}
    if not runs:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 4.8), sharex=True)
    for name, r in sorted(runs.items()):
        steps = range(1, len(r["zero_signal_share"]) + 1)
        top.plot(steps, r["zero_signal_share"], lw=1, label=name)
        bottom.plot(steps, [x if x is not None else math.nan for x in r["mean_reward"]], lw=1)
    top.axhline(0.3, color="#cc0000", ls="--", lw=0.8)
    top.set_ylabel("groups with no\nreward variance")
    bottom.set_ylabel("mean reward")
    bottom.set_xlabel("optimizer step")
    top.legend(fontsize=7, ncol=2)
    return _png(fig)


def _reads_kept(results: dict) -> bool:
    """Whether the frontier read retention as the share of the base's right answers kept (``analysis.retention``)."""
    return (results.get("config") or {}).get("analysis", {}).get("retention") == "kept"


def retention_words(results: dict, long: bool = False) -> str:
    """What the frontier's retention is (``analysis.retention``), for axes and sentences."""
    kept = _reads_kept(results)
    if not long:
        return "share of the base's right answers kept" if kept else "prior-task accuracy retention"
    if kept:
        return "share of the base's right prior-task answers kept (gains count for nothing)"
    return "prior-task accuracy retention (a ratio to the base)"


def forgetting_words(results: dict) -> str:
    """What the forgetting regressed on KL counts (``analysis.retention``)."""
    if _reads_kept(results):
        return "accuracy points lost on prompts the base had right"
    return "accuracy points lost, net of gains"


def _level_label(results: dict, name: str) -> str:
    level = results["comparison"]["levels"][name]
    return f"{name} (accuracy {number_text(level)})"


def difference_rows(results: dict) -> list[list[str]]:
    """One row per (pair, level, task): the retention difference with its interval and the share of resamples in
    which both arms reach the level."""
    rows = []
    comparison = results.get("comparison") or {}
    for pair, by_level in comparison.get("difference", {}).items():
        later, first = pair.split("-", 1)
        for name, by_task in by_level.items():
            for task, stat in by_task.items():
                rows.append(
                    [
                        f"{later} - {first}",
                        _level_label(results, name),
                        task,
                        interval_text(stat),
                        number_text(stat.get("defined_share")),
                    ]
                )
    return rows


def paired_rows(results: dict) -> list[list[str]]:
    rows = []
    for pair, by_level in (results.get("paired_tests") or {}).items():
        later, first = pair.split("-", 1)
        for name, by_task in by_level.items():
            for task, test in by_task.items():
                chosen = test["chosen"]
                mc = test["mcnemar_top1"]
                logp = test.get("logp_answer") or {}
                rows.append(
                    [
                        f"{later} - {first}",
                        _level_label(results, name),
                        task,
                        ", ".join(f"{arm} lr {c['lr']:g} step {c['step']}" for arm, c in chosen.items()),
                        f"{mc['only_a']} / {mc['only_b']}",
                        p_text(mc["p"]),
                        interval_text(logp) if logp else "n/a",
                        p_text(logp.get("p")) if logp else "n/a",
                    ]
                )
    return rows


def least_kl_rows(results: dict) -> list[list[str]]:
    comparison = results.get("comparison") or {}
    rows = []
    for arm, by_level in (comparison.get("least_kl") or {}).items():
        for name, stat in by_level.items():
            rows.append([arm, _level_label(results, name), interval_text(stat)])
    for pair, by_level in (comparison.get("least_kl_difference") or {}).items():
        later, first = pair.split("-", 1)
        for name, stat in by_level.items():
            rows.append([f"{later} - {first}", _level_label(results, name), interval_text(stat)])
    return rows


def speed_rows(results: dict) -> list[list[str]]:
    rows = []
    for arm, by_level in (results.get("speed") or {}).items():
        for name, first in by_level.items():
            rows.append(
                [
                    arm,
                    _level_label(results, name),
                    "not reached" if first is None else str(first["step"]),
                    "" if first is None else f"{first['lr']:g}",
                    "" if first is None else f"{first['seconds']:.0f}",
                ]
            )
    return rows


def _zero_signal(sampled: float | None, trained: list[float] | None) -> str:
    """A run's share of groups without reward variance, and of the groups it trained on (dynamic sampling)."""
    text = number_text(sampled)
    return f"{text} (trained on: {number_text(sum(trained) / len(trained))})" if trained else text


def run_rows(results: dict) -> list[list[str]]:
    rows = []
    for name, r in results["runs"].items():
        last = r["checkpoints"][-1]
        signal = r.get("signal") or reward_signal(r["zero_signal_share"], r["mean_reward"])
        rows.append(
            [
                name,
                str(r["steps_trained"]),
                r.get("stop_reason") or ("plateau" if r["stopped_at_plateau"] else "budget"),
                number_text(last["target_accuracy"]),
                number_text(last["kl_forward"]),
                _zero_signal(signal["zero_signal_share"], r.get("trained_zero_signal_share"))
                if r["zero_signal_share"]
                else "",
                number_text(signal["all_wrong_at_most"]) if r["zero_signal_share"] else "",
                ("~" if r.get("training_seconds_estimated") else "") + f"{r['training_seconds']:.0f}",
            ]
        )
    return rows


def predictor_rows(results: dict) -> list[list[str]]:
    rows = []
    for scope, pred in (results.get("predictors") or {}).items():
        rows.append(
            [
                scope,
                str(pred["n_points"]),
                str(pred["n_runs"]),
                interval_text(pred["r2_kl"]),
                interval_text(pred["slope_per_nat"]),
                interval_text(pred["partial_r2_circuit"]),
            ]
        )
    return rows


def _direction(stat: dict, later: str, first: str, what: str) -> str:
    low, high = stat.get("ci_low"), stat.get("ci_high")
    if not isinstance(low, float | int) or not isinstance(high, float | int) or not (_finite(low) and _finite(high)):
        return "no interval"
    if low > 0:
        return f"{later} keeps more {what}"
    if high < 0:
        return f"{first} keeps more {what}"
    return "no difference the interval can tell"


def frontier_summary(results: dict) -> list[str]:
    """The verdicts, one sentence each, every number named for what it is."""
    out = []
    arms = results["arms"]
    base = results["base"]
    seeds = results["seeds"]
    out.append(
        f"{len(results['configs'])} configurations (arm, learning rate, step) of {len(results['runs'])} runs over "
        f"{len(seeds)} seed(s); base held-out target accuracy {number_text(base['accuracy'])}."
    )
    comparison = results.get("comparison") or {}
    if len(arms) > 1 and not comparison.get("levels"):
        out.append("No matched comparison: some arm never rose above the base model's target accuracy.")
    for pair, by_level in comparison.get("difference", {}).items():
        later, first = pair.split("-", 1)
        for name, by_task in by_level.items():
            stat = by_task[MEAN]
            out.append(
                f"At {_level_label(results, name)}, the best mean {retention_words(results, long=True)} "
                f"of {later} minus that of {first} is {interval_text(stat)} (95 % bootstrap over seeds, questions "
                f"and prompts; both reach the level in {number_text(stat.get('defined_share'))} of resamples): "
                f"{_direction(stat, later, first, 'of its prior skills')} (table: matched accuracy)."
            )
    for pair, by_level in comparison.get("least_kl_difference", {}).items():
        later, first = pair.split("-", 1)
        name = max(by_level, key=lambda n: comparison["levels"][n])
        least = comparison["least_kl"]
        out.append(
            f"The least forward KL on the target at which each arm reaches {_level_label(results, name)}: {first} "
            f"{interval_text(least[first][name])}, {later} {interval_text(least[later][name])} nats; {later} minus "
            f"{first} {interval_text(by_level[name])} (RL's Razor's measure of how far an arm must move; table: "
            "least KL)."
        )
    speed = results.get("speed") or {}
    if len(arms) > 1 and comparison.get("levels"):
        top = max(comparison["levels"], key=lambda n: comparison["levels"][n])
        parts = []
        for arm in arms:
            first = speed.get(arm, {}).get(top)
            parts.append(f"{arm} at step {first['step']} (lr {first['lr']:g})" if first else f"{arm} never")
        out.append(f"Fewest steps to {_level_label(results, top)}: " + "; ".join(parts) + " (table: adaptation speed).")
    pred = (results.get("predictors") or {}).get("all")
    if pred:
        out.append(
            f"Forgetting ({forgetting_words(results)}, mean over prior tasks) against forward KL on the target across "
            f"{pred['n_points']} points: R^2 {interval_text(pred['r2_kl'])}; the circuit's joint damage adds a "
            f"partial R^2 of {interval_text(pred['partial_r2_circuit'])} beyond KL (95 % over runs; table: "
            "predictors)."
        )
    signal = results.get("rl_signal") or {}
    if signal.get("zero_signal_share") is not None:
        out.append(
            "RL's groups without reward variance (no learning signal): "
            f"{number_text(signal['zero_signal_share'])} of groups, mean over {signal['steps']} steps of "
            f"{signal['runs']} runs; at most {number_text(signal['all_wrong_at_most'])} were all wrong (never "
            f"rewarded), at least {number_text(signal['all_right_at_least'])} all right (learned), bounds from each "
            "step's mean reward (figure: RL's reward signal; table: runs)."
            + (
                f" With dynamic sampling, {number_text(signal['trained_zero_signal_share'])} of the groups trained on."
                if signal.get("trained_zero_signal_share") is not None
                else ""
            )
        )
    picks = results.get("picks") or {}
    if picks.get("target_accuracy") is not None:
        best = picks["cheapest"][:1]
        if best:
            b = best[0]
            out.append(
                f"Cheapest to reach target accuracy {number_text(picks['target_accuracy'])} keeping every prior task's "
                f"retention at least {number_text(picks['retention_floor'])}: {b['arm']} at lr {b['lr']:g}, step "
                f"{b['step']} ({b['seconds']:.0f} s of training; table: picks)."
            )
        else:
            out.append(
                f"No configuration reaches target accuracy {number_text(picks['target_accuracy'])} while keeping every "
                f"prior task's retention at least {number_text(picks['retention_floor'])}."
            )
    return out


def pick_rows(results: dict) -> list[list[str]]:
    rows = []
    for p in (results.get("picks") or {}).get("cheapest", []):
        rows.append(
            [
                p["arm"],
                f"{p['lr']:g}",
                str(p["step"]),
                number_text(p["accuracy"]),
                ", ".join(f"{t} {number_text(v)}" for t, v in p["retention"].items() if t != MEAN),
                f"{p['seconds']:.0f}",
            ]
        )
    return rows


TABLES = {
    "matched": (["arms", "level", "task", "retention difference", "both reach"], difference_rows),
    "paired": (
        ["arms", "level", "task", "chosen", "only first / only later", "McNemar p", "log p difference", "p"],
        paired_rows,
    ),
    "least_kl": (["arm", "level", "least forward KL (nats)"], least_kl_rows),
    "speed": (["arm", "level", "step", "lr", "seconds"], speed_rows),
    "predictors": (["points", "n", "runs", "R^2 (KL)", "slope per nat", "partial R^2 (circuit)"], predictor_rows),
    "picks": (["arm", "lr", "step", "accuracy", "retention", "seconds"], pick_rows),
    "runs": (
        ["run", "steps", "stopped at", "target accuracy", "KL (nats)", "zero-signal share", "all wrong ≤", "seconds"],
        run_rows,
    ),
}
"""Every table of the frontier page: its header and the function that makes its rows from frontier.json."""


def frontier_markdown(results: dict) -> str:
    """The verdicts and every table of the page as Markdown (``forgetlens report DIR --markdown``)."""
    lines = [*frontier_summary(results), ""]
    for name, (header, rows) in TABLES.items():
        lines += [f"### {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows(results)]
        lines.append("")
    return "\n".join(lines)


def render_frontier(results: dict) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("forgetlens.report", "templates"), autoescape=True, undefined=StrictUndefined
    )
    tradeoff, legend = tradeoff_figure(results)
    picks = results.get("picks") or {}
    tables = [
        (
            "matched",
            "Matched accuracy: retention difference",
            f"Best {retention_words(results, long=True)} (per task and mean) of the later arm minus the first, at each "
            "matched held-out target accuracy; 95 % bootstrap interval over seeds, questions and prompts; the last "
            "column is the share of resamples in which both arms reach the level.",
            *_table("matched", results),
        ),
        (
            "paired",
            "Paired tests on the same prompts",
            "The configuration each frontier picks at the level; McNemar's exact test on top-1 (prompts answered "
            "right by only the first arm / only the later one, pairs over prompts and seeds) and a paired bootstrap "
            "on log p(answer) (later minus first, nats).",
            *_table("paired", results),
        ),
        (
            "least_kl",
            "Least KL",
            "The least forward KL(base || tuned) on the target (nats per completion, mean over seeds) among each arm's "
            "configurations reaching each level, and the difference; 95 % bootstrap over seeds.",
            *_table("least_kl", results),
        ),
        (
            "speed",
            "Adaptation speed",
            "The earliest step (over learning rates, mean over seeds) at which each arm reaches each level, and "
            "the training seconds to get there.",
            *_table("speed", results),
        ),
        (
            "predictors",
            "Forgetting predictors",
            f"Forgetting ({forgetting_words(results)}, mean over prior tasks) regressed on forward KL on the target; "
            "partial R^2 of the circuit's joint damage (nats) beyond KL; 95 % intervals resample whole runs.",
            *_table("predictors", results),
        ),
        (
            "picks",
            "Cheapest picks",
            f"Configurations reaching target accuracy {number_text(picks.get('target_accuracy'))} with every prior "
            f"task's retention at least {number_text(picks.get('retention_floor'))}, cheapest training time first.",
            *_table("picks", results),
        ),
        (
            "runs",
            "Runs",
            "Each run's steps trained (stopped at its accuracy's plateau, at its training reward's saturation, or at "
            "its budget), its last checkpoint, RL's mean share of "
            "groups without reward variance and at most how many of them were never rewarded, and training seconds "
            "(~: a resumed run, its arm's median seconds per step of runs trained in one session times its steps).",
            *_table("runs", results),
        ),
    ]
    figures = [
        ("per_task", "Each prior task's frontier", per_task_figure(results)),
        ("kl", "Forgetting against forward KL", kl_figure(results)),
        ("signal", "RL's reward signal", signal_figure(results)),
    ]
    return env.get_template("frontier.html.j2").render(
        summary=frontier_summary(results),
        tradeoff=tradeoff,
        legend=" | ".join(legend),
        tables=tables,
        figures=[(i, t, png) for i, t, png in figures if png],
        circuits={t: len(h) for t, h in results.get("circuits", {}).items()},
        schema=results.get("schema", ""),
    )


def _table(name: str, results: dict) -> tuple[list[str], list[list[str]]]:
    header, rows = TABLES[name]
    return header, rows(results)


def write_frontier_report(results: dict, path: Path) -> None:
    atomic_write_text(path, render_frontier(results))
