"""The report's figures, each a function of results.json returning PNG bytes (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import matplotlib.collections
import matplotlib.colors
import matplotlib.lines
import matplotlib.patches
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from forgetlens.analysis.runs import ModelLabel, checkpoint_label, pair_comparison, pair_label  # noqa: E402
from forgetlens.analysis.summary import (  # noqa: E402
    CLAIM_HELD,
    CLAIM_NEGLIGIBLE,
    CLAIM_REVERSED,
    CLAIM_UNCLEAR,
    GENERAL_LABELS,
    MIN_EFFECT,
    checkpoint_rows,
    claim_verdict,
    prior_tasks,
    runs_by_method,
)
from forgetlens.report.text import MIN_FIT_POINTS, interval_text, number_text, p_text  # noqa: E402

COLORS = {
    "sft": "#d95f02",
    "rl": "#1b9e77",
    "sft-preserve": "#7570b3",
    "rl-preserve": "#66a61e",
    "replay": "#e7298a",
    "sft-kl": "#a6761d",
    "sft-rl": "#386cb0",
}
MARKERS = {"sft": "o", "rl": "^", "sft-preserve": "s", "rl-preserve": "v", "replay": "D", "sft-kl": "P", "sft-rl": "X"}


@dataclass(frozen=True)
class Figure:
    """One figure of the report: its PNG, the legend's entries and the tick labels naming heads (the page carries
    both beside the image, so a reader's tools and the browser test see what the picture shows)."""

    png: bytes
    legend: tuple[str, ...] = ()
    """Every legend entry drawn, read from the figure's legends (never written separately from them)."""
    labels: tuple[str, ...] = ()
    unmatched_legend: tuple[str, ...] = ()
    """Legend entries whose colour no artist drawn in their axes has (:func:`legend_mismatches`); empty in a
    figure that tells the truth about its bars and lines."""


def _rgb(colors) -> set[tuple[float, ...]]:
    """``colors`` (one matplotlib colour or an array of them) as rounded RGB triples, the transparent ones left out."""
    rgba = matplotlib.colors.to_rgba_array(colors)  # [n, 4]
    return {tuple(round(float(c), 3) for c in row[:3]) for row in rgba if row[3] > 0}


def _colours(artist) -> set[tuple[float, ...]]:
    """The colours ``artist`` paints with: line and marker of a line, face and edge of a patch or collection."""
    if isinstance(artist, matplotlib.lines.Line2D):
        found = [artist.get_color(), artist.get_markerfacecolor()]
    else:
        found = [artist.get_facecolor(), artist.get_edgecolor()]
    return set().union(*(_rgb(f) for f in found if f is not None and np.size(f) > 0))


def _drawn(artist) -> bool:
    """Whether ``artist`` puts anything on the axes (an empty scatter made only for a legend does not)."""
    if isinstance(artist, matplotlib.lines.Line2D):
        return np.size(artist.get_xdata()) > 0
    if isinstance(artist, matplotlib.collections.PathCollection):
        return np.size(artist.get_offsets()) > 0
    if isinstance(artist, matplotlib.collections.Collection):
        return len(artist.get_paths()) > 0
    return True


def legend_mismatches(fig) -> list[str]:
    """Legend entries of ``fig`` whose swatch is in a colour that nothing drawn in the same axes has (a legend
    built by hand that does not describe its bars): ``[]`` when every entry matches something drawn."""
    unmatched = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        drawn: set[tuple[float, ...]] = set()
        for artist in [*ax.lines, *ax.patches, *ax.collections]:
            if _drawn(artist):
                drawn |= _colours(artist)
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            if handle is not None and not _colours(handle) & drawn:
                unmatched.append(text.get_text())
    return unmatched


def _figure(fig, labels: Sequence[str] = ()) -> Figure:
    """``fig`` as PNG bytes, with the entries of every legend it draws and ``labels`` (tick labels naming heads)."""
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    unmatched = legend_mismatches(fig)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return Figure(buf.getvalue(), tuple(dict.fromkeys(legend)), tuple(labels), tuple(unmatched))


def _seeds_label(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def _band(ax, c: dict, method: str) -> None:
    """A method's curve (mean over seeds), labelled for the legend, with its 95 % t-band when several seeds ran;
    points joined by a dotted line when only two steps were measured (nothing is known between them)."""
    color = COLORS.get(method)
    label = f"{method} ({_seeds_label(c['n_seeds'])})"
    style = ":" if len(c["steps"]) <= 2 else "-"
    ax.plot(c["steps"], c["mean"], marker=MARKERS.get(method, "o"), ms=5, ls=style, color=color, label=label)
    low, high = np.array(c["low"], dtype=float), np.array(c["high"], dtype=float)
    if c["n_seeds"] > 1 and not np.all(np.isnan(low)):
        ax.fill_between(c["steps"], low, high, color=color, alpha=0.2)
    if len(c["steps"]) <= 8:
        ax.set_xticks(c["steps"])


def _over_seeds(results: dict) -> str:
    n = len(results["seeds"])
    return f"mean, 95 % t-band over {n} seeds" if n > 1 else "one seed: no band"


def target_accuracy(results: dict) -> Figure:
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for method, curves in results["curves"].items():
        _band(ax, curves["target_accuracy"], method)
    ax.axhline(results["accuracy_threshold"], ls="--", color="grey", lw=1, label="adaptation threshold")
    ax.set(
        xlabel="optimizer step",
        ylabel="held-out target accuracy",
        ylim=(0, 1.02),
        title=f"Adaptation: target accuracy ({_over_seeds(results)})",
    )
    ax.legend(fontsize=9)
    return _figure(fig)


def _per_task(results: dict, key: str, ylabel: str, title: str, hline: float | None = 1.0) -> Figure:
    tasks = prior_tasks(results)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks) + 0.6, 3.4), squeeze=False, sharey=True)
    for ax, t in zip(axes[0], tasks):
        for method, curves in results["curves"].items():
            _band(ax, curves[f"{key}/{t}"], method)
        if hline is not None:
            ax.axhline(hline, color="grey", lw=0.8, ls=":")
        ax.set(title=t, xlabel="step")
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{title} ({_over_seeds(results)})", fontsize=11)
    return _figure(fig)


def prior_retention(results: dict) -> Figure:
    return _per_task(results, "retention", "accuracy retention (tuned / base)", "Forgetting: prior-task retention")


def faithfulness_retention(results: dict) -> Figure:
    return _per_task(
        results, "faithfulness_retention", "F_theta(C0) / F_0(C0)", "Base-circuit faithfulness retention over training"
    )


def circuit_vulnerability(results: dict) -> Figure:
    return _per_task(results, "v_circuit", "V(C0)", "Base-circuit vulnerability V(C0) over training", hline=0.0)


def tradeoff(results: dict) -> Figure:
    """The trade-off first: each method's checkpoints as held-out target accuracy against mean prior-task accuracy
    retention, joined in step order, the base at (its accuracy, 1); with several seeds each point is the mean with
    its 95 % t-interval in both directions. One run per method at one rate gives points, not frontiers."""
    fig, ax = plt.subplots(figsize=(6.6, 4.2))
    for method in runs_by_method(results):
        c = results["curves"][method]
        acc, keep = c["target_accuracy"], c["mean_prior_retention"]
        color, marker = COLORS.get(method), MARKERS.get(method, "o")
        x, y = np.array(acc["mean"], dtype=float), np.array(keep["mean"], dtype=float)
        ax.plot(x, y, color=color, marker=marker, ms=5, lw=1.2, label=f"{method} ({_seeds_label(acc['n_seeds'])})")
        if acc["n_seeds"] > 1:
            xerr = np.abs(np.array([acc["low"], acc["high"]], dtype=float) - x)
            yerr = np.abs(np.array([keep["low"], keep["high"]], dtype=float) - y)
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="none", ecolor=color, alpha=0.5, lw=0.8)
        for step, xi, yi in zip(acc["steps"][-1:], x[-1:], y[-1:]):
            ax.annotate(f"step {step}", (xi, yi), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.axhline(1.0, color="#999999", lw=0.8, ls=":")
    ax.set(
        xlabel="held-out target accuracy",
        ylabel="mean prior-task accuracy retention",
        title="The trade-off: adaptation against what was kept (each point a checkpoint)",
    )
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    return _figure(fig)


def _final_labels(results: dict, method: str) -> list[str]:
    return [
        checkpoint_label(n, results["runs"][n]["checkpoints"][-1]["step"])
        for n in runs_by_method(results).get(method, [])
    ]


def heatmaps(results: dict) -> Figure:
    """Per task (rows): the base model's |importance| of every head and each method's V_cmap at its last step,
    layer x head with integer axes; the base circuit's heads outlined cell by cell."""
    tasks = prior_tasks(results)
    methods = [m for m in ("sft", "rl") if m in runs_by_method(results)]
    cols = 1 + len(methods)
    layout = results["layout"]
    fig, axes = plt.subplots(
        len(tasks), cols, figsize=(4.2 * cols, 0.16 * layout["n_layers"] * len(tasks) + 1.2 * len(tasks)), squeeze=False
    )
    for i, t in enumerate(tasks):
        task = results["tasks"][t]
        base = np.abs(np.array(task["base_scores"], dtype=float))  # [layer, head]
        panels = [("|base importance|", base, "Greys", "|attribution score|")]
        for m in methods:
            finals = _final_labels(results, m)
            v = np.mean([np.array(task["models"][lab]["v_cmap"]["value"], dtype=float) for lab in finals], 0)
            panels.append((f"V_cmap under {m}, last step", v, "RdBu_r", "V_cmap(h)"))
        vmax = max(1e-12, max(np.nanmax(np.abs(p[1])) for p in panels[1:])) if len(panels) > 1 else 1
        for j, (title, data, cmap, unit) in enumerate(panels):
            ax = axes[i][j]
            kwargs = {"vmin": -vmax, "vmax": vmax} if j else {}
            im = ax.imshow(data, cmap=cmap, aspect="auto", interpolation="nearest", **kwargs)
            for layer, head in task["circuit"]["heads"]:  # inset, so that neighbouring circuit heads stay apart
                ax.add_patch(plt.Rectangle((head - 0.42, layer - 0.42), 0.84, 0.84, fill=False, ec="#e6ab02", lw=1.6))
            n_layers, n_heads = data.shape
            ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)], fontsize=7)
            step = max(1, n_layers // 10)
            ax.set_yticks(range(0, n_layers, step), [str(l) for l in range(0, n_layers, step)], fontsize=7)
            ax.set_xlabel("head", fontsize=8)
            ax.set_ylabel("layer", fontsize=8)
            ax.set_title(f"{t}: {title}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02).set_label(unit, fontsize=8)
    sizes = ", ".join(f"{t} {len(results['tasks'][t]['circuit']['heads'])} heads" for t in tasks)
    fig.suptitle(f"Layer x head (outlined: the base circuit C0; {sizes})", fontsize=11)
    return _figure(fig)  # panels are titled by model; no legend


TOP_HEADS = 12
"""Heads drawn per task in the per-head DCV figure (those of largest |DCV(h)|); the rest are summarised."""


def dcv_heads(results: dict) -> Figure:
    """Per task: the TOP_HEADS heads of largest |DCV(h)| = |V_SFT(h) - V_RL(h)| at the last step, as labelled
    horizontal bars with their 95 % prompt-bootstrap interval and permutation p / BH q values; the other heads'
    largest |DCV| in the title.  Last panel: DCV(C0) per task."""
    tasks = prior_tasks(results)
    fig, axes = plt.subplots(
        1,
        len(tasks) + 1,
        figsize=(4.6 * len(tasks) + 3.2, 0.32 * TOP_HEADS + 1.6),
        squeeze=False,
        gridspec_kw={"width_ratios": [3] * len(tasks) + [2]},
    )
    circuit_bars, labels = [], []
    for ax, t in zip(axes[0], tasks):
        task = results["tasks"][t]
        first = pair_comparison(next(iter(task["dcv"]))) if task["dcv"] else None
        # the first comparison's pairs (sft:rl by default)
        steps = {p: pair_label(p).step for p in task["dcv"] if pair_comparison(p) == first}
        last = max((s for s in steps.values() if s is not None), default=None)
        chosen = [p for p, s in steps.items() if s is not None and s == last]
        members = {tuple(h) for h in task["circuit"]["heads"]}
        if chosen:
            value, low, high = (  # [layer, head], mean over seeds
                np.mean([np.array(task["dcv"][p]["v_cmap"][key], dtype=float) for p in chosen], 0)
                for key in ("value", "ci_low", "ci_high")
            )
            test = task.get("dcv_test", {}).get(chosen[0], {})
            p_grid = np.array(test.get("p_value", np.full_like(value, np.nan)), dtype=float)
            q_grid = np.array(test.get("q_value_bh", np.full_like(value, np.nan)), dtype=float)
            order = np.argsort(-np.abs(np.nan_to_num(value)).ravel())
            top = [divmod(int(i), value.shape[1]) for i in order[:TOP_HEADS]]
            rest = np.abs(np.nan_to_num(value)).ravel()[order[TOP_HEADS:]]
            y = np.arange(len(top))[::-1]
            v = np.array([value[l, h] for l, h in top])
            err = np.vstack([v - [low[l, h] for l, h in top], [high[l, h] for l, h in top] - v]).clip(min=0)
            ax.barh(y, v, xerr=np.nan_to_num(err), color=np.where(v > 0, COLORS["sft"], COLORS["rl"]), capsize=2)
            names = [f"L{l}H{h}" + (" (C0)" if (l, h) in members else "") for l, h in top]
            labels += names
            ax.set_yticks(y, names, fontsize=9)
            span = float(np.nanmax(np.abs(np.concatenate([v - err[0], v + err[1]])))) or 1.0
            for yy, (l, h) in zip(y, top):
                ax.text(
                    1.02,
                    yy,
                    f"p {p_text(p_grid[l, h])}, q {p_text(q_grid[l, h])}",
                    transform=ax.get_yaxis_transform(),
                    va="center",
                    fontsize=8,
                )
            ax.set_xlim(-1.1 * span, 1.1 * span)
            rest_text = (
                f"\nthe other {len(rest)} heads: |DCV(h)| <= {number_text(float(rest.max()))}" if len(rest) else ""
            )
            ax.set_title(f"{t}, step {last}: the {len(top)} heads of largest |DCV(h)|{rest_text}", fontsize=9)
        ax.axvline(0, color="k", lw=0.8)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=4, symmetric=True))  # labels never touch
        ax.set_xlabel("DCV(h) = V_SFT(h) - V_RL(h)\n(> 0, orange: SFT damages more)", fontsize=9)
        agg = task["seeds"]["dcv"].get(f"dcv@{last}", {}).get("v_circuit")
        if agg is None and chosen:
            agg = task["dcv"][chosen[0]]["v_circuit"]
        circuit_bars.append((t, agg))
    ax = axes[0][-1]
    shown = [(t, a) for t, a in circuit_bars if a]
    values = np.array([a["value"] for _, a in shown], dtype=float)
    lows = np.array([np.nan if a["ci_low"] is None else a["ci_low"] for _, a in shown], dtype=float)
    highs = np.array([np.nan if a["ci_high"] is None else a["ci_high"] for _, a in shown], dtype=float)
    err = np.nan_to_num(np.vstack([values - lows, highs - values])).clip(min=0)
    verdicts = np.array([claim_verdict(a) for _, a in shown])
    ax.axhspan(-MIN_EFFECT, MIN_EFFECT, color="#eeeeee", zorder=0, label=f"negligible: |DCV| < {MIN_EFFECT}")
    for verdict, label, color in (
        (CLAIM_HELD, "SFT damages more (held)", COLORS["sft"]),
        (CLAIM_REVERSED, "RL damages more (reversed)", COLORS["rl"]),
        (CLAIM_NEGLIGIBLE, "negligible", "#999999"),
        (CLAIM_UNCLEAR, "inconclusive", "#cccccc"),
    ):
        where = np.flatnonzero(verdicts == verdict)
        if len(where):  # one bar call per verdict, as the summary words it, so the legend is made from the bars
            ax.bar(where, values[where], yerr=err[:, where], capsize=3, color=color, ec="k", lw=0.5, label=label)
    ax.set_xticks(range(len(values)), [t for t, _ in shown], fontsize=9)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_title("DCV(C0) per task, last step,\nby the summary's verdict", fontsize=9)
    ax.set_ylabel("V_SFT(C0) - V_RL(C0)", fontsize=9)
    if len(values):  # below the axes, where it covers no bar or interval
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    return _figure(fig, labels)


def forgetting_vs_predictors(results: dict) -> Figure | None:
    """Forgetting of every (task, checkpoint) against forward KL and against V(C0), with the pooled fits' R²
    and intervals; None with fewer than MIN_FIT_POINTS points (the summary says so)."""
    fits = results["forgetting_predictors"]["pooled"]
    if fits["n_points"] < MIN_FIT_POINTS:
        return None
    rows = [r for r in checkpoint_rows(results) if r["step"] > 0]
    tasks = prior_tasks(results)
    methods = list(runs_by_method(results))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label, fit in (
        (axes[0], "kl", "forward KL(base || tuned) on target, nats per completion", fits["kl"]),
        (axes[1], "v", "base-circuit vulnerability V(C0)", fits["v_circuit"]),
    ):
        for r in rows:
            for t in tasks:
                x = r["kl_forward"] if key == "kl" else r[f"{t}_v_circuit"]
                ax.scatter(x, 1 - r[f"{t}_retention"], color=COLORS.get(r["method"], "grey"), s=12, alpha=0.7)
        r2 = number_text(fit["r2"])
        ax.set(xlabel=label, ylabel="forgetting (1 - accuracy retention)")
        ax.set_title(
            f"pooled R² = {r2} [{number_text(fit['ci_low'])}, {number_text(fit['ci_high'])}], n = {fits['n_points']}",
            fontsize=9,
        )
    for m in methods:
        axes[0].scatter([], [], color=COLORS.get(m, "grey"), label=m)
    axes[0].legend(fontsize=8)
    fig.suptitle("Which signal tracks forgetting? (every task x checkpoint)", fontsize=11)
    return _figure(fig)


def drift(results: dict) -> Figure | None:
    """Forward KL on the target prompts and, with ``general_eval``, on general chat, and general-knowledge
    accuracy, over training; None when the study measured only the target KL (the methods table has it)."""
    first = next(iter(results["curves"].values()))
    panels = [(k, GENERAL_LABELS.get(k, k)) for k in ["kl_forward"] + [k for k in first if k.startswith("general/")]]
    if len(panels) == 1:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.3), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for method, curves in results["curves"].items():
            _band(ax, curves[key], method)
        ax.set(title=title, xlabel="step")
        ax.title.set_fontsize(9)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Drift from the base model, on the target and off it ({_over_seeds(results)})", fontsize=11)
    return _figure(fig)


ANATOMY_BARS = (
    ("joint_total/C0", "C0, jointly (total)"),
    ("joint_local/C0", "C0's own weights"),
    ("joint_total/all_heads", "all heads (total)"),
    ("mlp_total", "all MLPs (total)"),
    ("weights/attention", "weights: attention"),
    ("weights/mlp", "weights: MLPs"),
    ("weights/embeddings", "weights: embeddings"),
    ("weights/unembedding", "weights: unembedding"),
    ("weights/final_norm", "weights: final norm"),
)
"""The anatomy figure's bars: intervention key, label."""


def _run_order(results: dict):
    """A sort key putting model labels in the order of their runs in results.json (SFT's before RL's, as every
    other figure and table of the page), then by label."""
    runs = list(results["runs"])

    def key(label: str) -> tuple[int, str]:
        run = str(ModelLabel.parse(label).run)
        return (runs.index(run) if run in runs else len(runs), label)

    return key


def anatomy(results: dict) -> Figure | None:
    """Per task (rows) and tuned model (columns): the share of its change (on the anatomy's metric) that each
    part carries, with 95 % prompt-bootstrap intervals. Bars only where there is a loss to assign: a model whose
    change is within the prompts' noise, or that improved, gets none (shares of a gain are not shares of
    forgetting). Shares are drawn within [-0.5, 1.5]; a share beyond that ends in an arrow at the edge with its
    value written beside it; the numbers are in the text beside."""
    tasks = [t for t in prior_tasks(results) if results["tasks"][t].get("anatomy")]
    if not tasks:
        return None
    labels = sorted({label for t in tasks for label in results["tasks"][t]["anatomy"]}, key=_run_order(results))
    fig, axes = plt.subplots(
        len(tasks), len(labels), figsize=(2.6 * len(labels) + 1.8, 2.9 * len(tasks)), squeeze=False, sharey=True
    )
    for r, task in enumerate(tasks):
        for c, label in enumerate(labels):
            ax = axes[r][c]
            a = results["tasks"][task]["anatomy"].get(label)
            rows = [(name, text) for name, text in ANATOMY_BARS if a is None or name in a["induced"]]
            rows.append(("interaction", "interaction (left over)"))
            y = np.arange(len(rows))[::-1]
            ax.set_yticks(y, [text for _, text in rows], fontsize=8)
            ax.set_xlim(-0.5, 1.5)
            ax.axvline(0, color="grey", lw=0.8)
            ax.axvline(1, color="grey", lw=0.8, ls=":")
            if a is None:
                ax.set_title(f"{task}, {label}: not measured", fontsize=8)
                continue
            m = a["metric"]
            change = a["behaviour"][m]["change"]
            ax.set_title(f"{task}, {label}\nchange in {m}: {interval_text(change)}", fontsize=8)
            if change["ci_low"] is not None and change["ci_low"] <= 0 <= change["ci_high"]:
                ax.text(0.5, len(rows) / 2, "change within noise:\nnothing to assign", ha="center", fontsize=8)
                continue
            if change["value"] is not None and change["value"] > 0:
                ax.text(0.5, len(rows) / 2, "improved:\nno loss to assign", ha="center", fontsize=8)
                continue
            stats = [a["interaction"][m] if n == "interaction" else a["induced"][n][m]["share"] for n, _ in rows]
            value, low, high = (
                np.array([np.nan if x[k] is None else x[k] for x in stats], dtype=float)
                for k in ("value", "ci_low", "ci_high")
            )
            shown = np.nan_to_num(value).clip(-0.5, 1.5)
            ax.barh(y, shown, color=COLORS.get(label.split("-s")[0], "#555555"))
            err = np.vstack([np.nan_to_num(value - low), np.nan_to_num(high - value)]).clip(min=0, max=2)
            inside = shown == np.nan_to_num(value)
            ax.errorbar(shown[inside], y[inside], xerr=err[:, inside], fmt="none", ecolor="black", lw=1, capsize=2)
            for yi, v, s in zip(y[~inside], value[~inside], shown[~inside]):  # beyond the axis: an arrow and the value
                ax.plot([s], [yi], marker="<" if v < s else ">", color="black", ms=7, clip_on=False)
                ax.annotate(
                    f"{v:.2f}",
                    (s, yi),
                    xytext=(6 if v < s else -6, 4),
                    textcoords="offset points",
                    ha="left" if v < s else "right",
                    fontsize=7,
                )
            if r == len(tasks) - 1:
                ax.set_xlabel("share of the change")
    return _figure(fig)  # panels are titled by model; no legend


def own_circuit_retention(results: dict) -> Figure | None:
    """Per task (columns) and method of finding circuits (rows): each tuned model's retention of the base circuit
    (mean over seeds, 95 % t-interval, seeds as dots), the random-set null (grey ticks) and the split-half ceiling
    (dashed line)."""
    tasks = [t for t in prior_tasks(results) if results["tasks"][t].get("own_circuits")]
    if not tasks:
        return None
    methods = sorted({m for t in tasks for m in results["tasks"][t]["own_circuits"]})
    fig, axes = plt.subplots(
        len(methods), len(tasks), figsize=(3.0 * len(tasks) + 1, 2.6 * len(methods)), squeeze=False, sharey=True
    )
    for r, method in enumerate(methods):
        for c, task in enumerate(tasks):
            ax = axes[r][c]
            summary = results["tasks"][task]["own_circuits"].get(method)
            ax.set_title(f"{task}, {method}", fontsize=9)
            ax.set_ylim(0, 1.05)
            if summary is None:
                continue
            groups = list(summary["groups"])
            for x, group in enumerate(groups):
                g = summary["groups"][group]
                kind = str(ModelLabel.parse(group).run)
                value, low, high = (g["retention"][k] for k in ("value", "ci_low", "ci_high"))
                err = None if low is None or np.isnan(low) else [[value - low], [high - value]]
                ax.bar(x, value, color=COLORS.get(kind, "#555555"), alpha=0.8)
                if err is not None:
                    ax.errorbar(x, value, yerr=err, fmt="none", ecolor="black", lw=1, capsize=3)
                ax.scatter(
                    [x] * len(g["retention"]["per_seed"]), g["retention"]["per_seed"], color="black", s=8, zorder=3
                )
                ax.hlines(g["null_retention"]["value"], x - 0.4, x + 0.4, color="grey", lw=2)
            ceiling = (summary.get("ceiling") or {}).get("retention")
            if ceiling is not None:
                ax.axhline(ceiling, color="black", ls="--", lw=1)
            ax.set_xticks(range(len(groups)), [str(ModelLabel.parse(g).run) for g in groups], fontsize=8)
            if c == 0:
                ax.set_ylabel("retention of C0")
    return _figure(fig)  # bars are labelled by model group; no legend


FIGURES = {
    "target_accuracy": ("Adaptation", target_accuracy),
    "prior_retention": ("Forgetting", prior_retention),
    "drift": ("Drift: forward KL and general knowledge", drift),
    "heatmaps": ("Where the circuits are, and what each method does to them", heatmaps),
    "dcv_heads": ("Differential circuit vulnerability", dcv_heads),
    "faithfulness_retention": ("Circuit faithfulness over training", faithfulness_retention),
    "circuit_vulnerability": ("Circuit vulnerability over training", circuit_vulnerability),
    "forgetting_vs_predictors": ("Forgetting against KL and against circuit vulnerability", forgetting_vs_predictors),
    "anatomy": ("Where the forgetting went: the share of each run's change each part carries", anatomy),
    "own_circuit_retention": (
        "Each model's own circuit: retention of the base circuit (grey: random sets of its size; dashed: ceiling)",
        own_circuit_retention,
    ),
}
