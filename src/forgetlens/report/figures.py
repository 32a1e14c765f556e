"""The report's figures, each a function of results.json returning PNG bytes (matplotlib, Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from forgetlens.metrics.summary import GENERAL_LABELS, checkpoint_rows, prior_tasks, runs_by_method  # noqa: E402

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


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _band(ax, c: dict, method: str, label: str | None = None) -> None:
    color = COLORS.get(method)
    ax.plot(c["steps"], c["mean"], marker="o", ms=3, color=color, label=label or f"{method} (n={c['n_seeds']})")
    low, high = np.array(c["low"], dtype=float), np.array(c["high"], dtype=float)
    if not np.all(np.isnan(low)):
        ax.fill_between(c["steps"], low, high, color=color, alpha=0.2)


def target_accuracy(results: dict) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for method, curves in results["curves"].items():
        _band(ax, curves["target_accuracy"], method)
    ax.axhline(results["accuracy_threshold"], ls="--", color="grey", lw=1, label="adaptation threshold")
    ax.set(
        xlabel="optimizer step",
        ylabel="held-out target accuracy",
        ylim=(0, 1.02),
        title="Adaptation: target accuracy (mean, 95% t-band over seeds)",
    )
    ax.legend(fontsize=8)
    return _png(fig)


def _per_task(results: dict, key: str, ylabel: str, title: str, hline: float | None = 1.0) -> bytes:
    tasks = prior_tasks(results)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False, sharey=True)
    for ax, t in zip(axes[0], tasks):
        for method, curves in results["curves"].items():
            _band(ax, curves[f"{key}/{t}"], method)
        if hline is not None:
            ax.axhline(hline, color="grey", lw=0.8, ls=":")
        ax.set(title=t, xlabel="step")
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def prior_retention(results: dict) -> bytes:
    return _per_task(results, "retention", "accuracy retention (tuned / base)", "Forgetting: prior-task retention")


def faithfulness_retention(results: dict) -> bytes:
    return _per_task(
        results, "faithfulness_retention", "F_theta(C0) / F_0(C0)", "Base-circuit faithfulness retention over training"
    )


def circuit_vulnerability(results: dict) -> bytes:
    return _per_task(results, "v_circuit", "V(C0)", "Base-circuit vulnerability V(C0) over training", hline=0.0)


def pareto(results: dict) -> bytes:
    rows = checkpoint_rows(results)
    fig, ax = plt.subplots(figsize=(6, 4))
    kl = np.array([r["kl_forward"] for r in rows])
    sc = None
    for method in runs_by_method(results):
        sel = [i for i, r in enumerate(rows) if r["method"] == method]
        sc = ax.scatter(
            [rows[i]["mean_prior_retention"] for i in sel],
            [rows[i]["target_accuracy"] for i in sel],
            c=kl[sel],
            cmap="viridis",
            vmin=kl.min(),
            vmax=max(kl.max(), 1e-9),
            marker=MARKERS.get(method, "X"),
            edgecolors="k",
            linewidths=0.4,
            label=method,
        )
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="forward KL(base || tuned) on target")
    ax.set(
        xlabel="mean prior-task accuracy retention",
        ylabel="target accuracy",
        title="Every checkpoint: new-task accuracy vs what was kept",
    )
    ax.legend(fontsize=8)
    return _png(fig)


def _final_labels(results: dict, method: str) -> list[str]:
    return [f"{n}@{results['runs'][n]['checkpoints'][-1]['step']}" for n in runs_by_method(results).get(method, [])]


def heatmaps(results: dict) -> bytes:
    tasks = prior_tasks(results)
    methods = [m for m in ("sft", "rl") if m in runs_by_method(results)]
    cols = 1 + len(methods)
    fig, axes = plt.subplots(len(tasks), cols, figsize=(3.4 * cols, 2.4 * len(tasks)), squeeze=False)
    for i, t in enumerate(tasks):
        task = results["tasks"][t]
        base = np.abs(np.array(task["base_scores"]))
        panels = [("|base importance|", base, "Greys")]
        for m in methods:
            v = np.mean([np.array(task["models"][lab]["v_cmap"]["value"]) for lab in _final_labels(results, m)], 0)
            panels.append((f"V_cmap under {m} (final)", v, "RdBu_r"))
        vmax = max(1e-9, max(np.abs(p[1]).max() for p in panels[1:])) if len(panels) > 1 else 1
        for j, (title, data, cmap) in enumerate(panels):
            ax = axes[i][j]
            kwargs = {"vmin": -vmax, "vmax": vmax} if j else {}
            im = ax.imshow(data, cmap=cmap, aspect="auto", **kwargs)
            for layer, head in task["circuit"]["heads"]:
                ax.add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, ec="gold", lw=1.5))
            ax.set(title=f"{t}: {title}", xlabel="head", ylabel="layer")
            ax.title.set_fontsize(8)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("Layer x head (gold boxes: base circuit C0)", fontsize=10)
    return _png(fig)


def dcv_heads(results: dict) -> bytes:
    tasks = prior_tasks(results)
    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(3.3 * (len(tasks) + 1), 3.4), squeeze=False)
    circuit_bars = []
    for ax, t in zip(axes[0], tasks):
        task = results["tasks"][t]
        pairs = [p for p in task["dcv"] if "@" in p and p.split("@")[1].isdigit()]
        last = max((int(p.split("@")[1]) for p in pairs), default=None)
        chosen = [p for p in pairs if p.endswith(f"@{last}")]
        heads = task["circuit"]["heads"]
        if chosen:
            vals = np.array([[task["dcv"][p]["v_cmap"]["value"][l][h] for l, h in heads] for p in chosen])
            low = np.array([[task["dcv"][p]["v_cmap"]["ci_low"][l][h] for l, h in heads] for p in chosen])
            high = np.array([[task["dcv"][p]["v_cmap"]["ci_high"][l][h] for l, h in heads] for p in chosen])
            mean = vals.mean(0)
            err = np.vstack([mean - low.mean(0), high.mean(0) - mean]).clip(min=0)
            ax.bar(range(len(heads)), mean, yerr=err, color=np.where(mean > 0, COLORS["sft"], COLORS["rl"]), capsize=2)
            ax.set_xticks(range(len(heads)), [f"L{l}H{h}" for l, h in heads], rotation=90, fontsize=7)
        ax.axhline(0, color="k", lw=0.8)
        ax.set(title=f"{t}: DCV(h) at step {last}", ylabel="V_SFT(h) - V_RL(h)")
        ax.title.set_fontsize(9)
        agg = task["seeds"]["dcv"].get(f"dcv@{last}", {}).get("v_circuit")
        if agg is None and chosen:
            agg = task["dcv"][chosen[0]]["v_circuit"]
        circuit_bars.append((t, agg))
    ax = axes[0][-1]
    names = [t for t, a in circuit_bars if a]
    bar_values = [a["value"] for _, a in circuit_bars if a]
    bar_errors = [
        [max(0, a["value"] - a["ci_low"]) if not np.isnan(a["ci_low"]) else 0 for _, a in circuit_bars if a],
        [max(0, a["ci_high"] - a["value"]) if not np.isnan(a["ci_high"]) else 0 for _, a in circuit_bars if a],
    ]
    ax.bar(range(len(bar_values)), bar_values, yerr=bar_errors, capsize=3, color="#7570b3")
    ax.set_xticks(range(len(bar_values)), names, rotation=30, fontsize=8)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(title="DCV(C0) per task (final step)", ylabel="V_SFT(C0) - V_RL(C0)")
    ax.title.set_fontsize(9)
    return _png(fig)


def forgetting_vs_predictors(results: dict) -> bytes:
    rows = [r for r in checkpoint_rows(results) if r["step"] > 0]
    tasks = prior_tasks(results)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    fits = results["forgetting_predictors"]["pooled"]
    for ax, key, label, fit in (
        (axes[0], "kl", "forward KL(base || tuned) on target (RL's Razor)", fits["kl"]),
        (axes[1], "v", "base-circuit vulnerability V(C0) (this study)", fits["v_circuit"]),
    ):
        for r in rows:
            for t in tasks:
                x = r["kl_forward"] if key == "kl" else r[f"{t}_v_circuit"]
                ax.scatter(x, 1 - r[f"{t}_retention"], color=COLORS.get(r["method"], "grey"), s=10, alpha=0.6)
        ax.set(
            xlabel=label,
            ylabel="forgetting (1 - accuracy retention)",
            title=f"pooled R^2 = {fit['r2']:.2f} [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]",
        )
    for m, c in COLORS.items():
        axes[0].scatter([], [], color=c, label=m)
    axes[0].legend(fontsize=8)
    fig.suptitle("Which signal tracks forgetting? (every task x checkpoint)", fontsize=10)
    return _png(fig)


def drift(results: dict) -> bytes | None:
    """Forward KL on the target prompts and, with ``general_eval``, on general chat, and general-knowledge
    accuracy, over training; None when the study measured only the target KL (the methods table has it)."""
    first = next(iter(results["curves"].values()))
    panels = [(k, GENERAL_LABELS.get(k, k)) for k in ["kl_forward"] + [k for k in first if k.startswith("general/")]]
    if len(panels) == 1:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for method, curves in results["curves"].items():
            _band(ax, curves[key], method)
        ax.set(title=title, xlabel="step")
        ax.title.set_fontsize(9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Drift from the base model, on the target and off it (mean, 95% t-band over seeds)", fontsize=10)
    return _png(fig)


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


def anatomy(results: dict) -> bytes | None:
    """Per task (rows) and tuned model (columns): the share of its change (on the anatomy's metric) that each
    part carries, with 95 % prompt-bootstrap intervals; a model whose change is within the prompts' noise gets no
    bars (nothing to assign).  Shares are drawn within [-0.5, 1.5]; the numbers are in the text beside."""
    tasks = [t for t in prior_tasks(results) if results["tasks"][t].get("anatomy")]
    if not tasks:
        return None
    labels = sorted({label for t in tasks for label in results["tasks"][t]["anatomy"]})
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
            ax.set_title(f"{task}, {label}\nchange in {m}: {change['value']:+.2f}", fontsize=8)
            if change["ci_low"] is not None and change["ci_low"] <= 0 <= change["ci_high"]:
                ax.text(0.5, len(rows) / 2, "change within noise:\nnothing to assign", ha="center", fontsize=8)
                continue
            stats = [a["interaction"][m] if n == "interaction" else a["induced"][n][m]["share"] for n, _ in rows]
            value, low, high = (
                np.array([np.nan if x[k] is None else x[k] for x in stats], dtype=float)
                for k in ("value", "ci_low", "ci_high")
            )
            ax.barh(y, np.nan_to_num(value).clip(-0.5, 1.5), color=COLORS.get(label.split("-s")[0], "#555555"))
            err = np.vstack([np.nan_to_num(value - low), np.nan_to_num(high - value)]).clip(min=0, max=2)
            ax.errorbar(np.nan_to_num(value).clip(-0.5, 1.5), y, xerr=err, fmt="none", ecolor="black", lw=1, capsize=2)
            if r == len(tasks) - 1:
                ax.set_xlabel("share of the change")
    return _png(fig)


def own_circuit_retention(results: dict) -> bytes | None:
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
                kind = group.split("@")[0]
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
            ax.set_xticks(range(len(groups)), [g.split("@")[0] for g in groups], fontsize=8)
            if c == 0:
                ax.set_ylabel("retention of C0")
    return _png(fig)


FIGURES = {
    "target_accuracy": ("Adaptation", target_accuracy),
    "prior_retention": ("Forgetting", prior_retention),
    "drift": ("Drift: forward KL and general knowledge", drift),
    "pareto": ("Adaptation vs retention", pareto),
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
