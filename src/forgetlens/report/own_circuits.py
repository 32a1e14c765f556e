"""The report's tables of every model's own circuit against the base circuit (``analysis/own_circuits.py``)."""

from __future__ import annotations

from forgetlens.analysis.summary import prior_tasks
from forgetlens.report.text import interval_text

Table = tuple[list[str], list[list[str]]]


def _interval(stat: dict) -> str:
    return interval_text(stat, "{:.2f}")


def own_circuit_table(results: dict) -> Table | None:
    """Per task, method and model group (mean over seeds): circuit size, retention of the base circuit with the
    random-set null and the split-half ceiling, overlap, Jaccard, faithfulness, mean |mask shift| on C0; the base
    row first. None when no own circuits were found."""
    rows = []
    for task in prior_tasks(results):
        for method, summary in (results["tasks"][task].get("own_circuits") or {}).items():
            base, ceiling = summary["base"], summary["ceiling"] or {}
            rows.append(
                [
                    task,
                    method,
                    "base",
                    str(base["k"]),
                    "1",
                    "",
                    f"{ceiling.get('retention', float('nan')):.2f}",
                    "1",
                    "1",
                    f"{base['faithfulness']:.2f}",
                    "",
                ]
            )
            for group, g in summary["groups"].items():
                shift = g.get("mask_shift_abs_c0")
                rows.append(
                    [
                        task,
                        method,
                        group,
                        f"{g['k']['value']:.1f}",
                        _interval(g["retention"]),
                        f"{g['null_retention']['value']:.2f}",
                        "",
                        _interval(g["overlap"]),
                        _interval(g["jaccard"]),
                        _interval(g["faithfulness"]),
                        _interval(shift) if shift else "",
                    ]
                )
    if not rows:
        return None
    head = [
        "task",
        "method",
        "model",
        "|C|",
        "retention of C0",
        "null",
        "ceiling",
        "overlap",
        "Jaccard",
        "faithfulness",
        "|Δm| on C0",
    ]
    return head, rows


def own_circuit_differences(results: dict) -> Table | None:
    """Per task and method: retention differences between methods, paired by seed (``rl - sft`` is the paper's
    DCV in retention form), and the paper's vulnerable-head counts beside their mirror."""
    rows = []
    for task in prior_tasks(results):
        for method, summary in (results["tasks"][task].get("own_circuits") or {}).items():
            for pair, d in summary["dcv_paper"].items():
                rows.append([task, method, pair, _interval(d["retention"]), _interval(d["jaccard"]), ""])
            for pair, v in (summary.get("vulnerable") or {}).items():
                rows.append(
                    [
                        task,
                        method,
                        f"vulnerable heads, {pair} (δ={v['delta']:g})",
                        "",
                        "",
                        f"{_interval(v['n_sft_below'])} (mirror {_interval(v['n_mirror'])})",
                    ]
                )
    if not rows:
        return None
    return ["task", "method", "difference", "retention", "Jaccard", "heads of C0"], rows
