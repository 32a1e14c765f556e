"""The audit's console summary: per task, a table that fits 80 columns, a verdict per model in words, the paired
tests of behaviour on the same prompts, and what the matched rows are."""

from __future__ import annotations

import textwrap

from forgetlens.analysis.runs import ModelLabel
from forgetlens.report.text import interval_text, p_text

WIDTH = 80
"""Columns the console summary fits."""


def _verdict(name: str, stat: dict) -> str:
    """One sentence on V(C0)'s interval: damage, strengthening, or nothing the interval can tell."""
    low, high = stat.get("ci_low"), stat.get("ci_high")
    value = interval_text(stat)
    if not isinstance(low, float | int) or not isinstance(high, float | int):
        return f"{name}: V(C0) = {value}, no interval"
    if low > 0:
        return f"{name}: damaged the base circuit, V(C0) = {value}"
    if high < 0:
        return f"{name}: the base circuit's effect grew, V(C0) = {value}"
    return f"{name}: no damage to the base circuit the interval can tell, V(C0) = {value}"


def audit_lines(result: dict) -> list[str]:
    """The summary ``forgetlens audit`` prints: every line at most :data:`WIDTH` columns."""
    out = []
    matched = False
    for task, r in result["tasks"].items():
        circuit = r["circuit"]
        out.append(f"{task}: base circuit C0 of {circuit['k']} heads (faithfulness {circuit['faithfulness']:.2f})")
        out.append(f"  {'model':<14} {'faithfulness retention':>29} {'V(C0)':>30}")
        rows = list(r["models"].items()) + [(f"DCV{pair}", stats) for pair, stats in r["dcv"].items()]
        for name, s in rows:
            label = ModelLabel.parse(name)
            matched = matched or label.level is not None
            shown = f"{name}*" if label.level is not None else name
            out.append(f"  {shown:<14} {interval_text(s['retention']):>29} {interval_text(s['v_circuit']):>30}")
        for name, s in r["models"].items():
            if ModelLabel.parse(name).level is None:
                out += textwrap.wrap(
                    _verdict(name, s["v_circuit"]), WIDTH, initial_indent="  ", subsequent_indent="    "
                )
        for name, test in (r.get("paired_tests") or {}).items():
            mc, logp = test["mcnemar_top1"], test["logp_answer"]
            line = (
                f"{name}, same prompts: top-1 only first / only second {mc['only_a']} / {mc['only_b']} (McNemar p "
                f"{p_text(mc['p'])}); log p(answer) {interval_text(logp)} nats (p {p_text(logp['p'])})"
            )
            out += textwrap.wrap(line, WIDTH, initial_indent="  ", subsequent_indent="    ")
    if any(r["dcv"] for r in result["tasks"].values()):
        out.append("DCV rows: positive = SFT damages more (retention: RL - SFT; V(C0): SFT - RL).")
    if matched:
        out.append("* matched levels (RUN@acc:F, RUN@kl:F) interpolate between the two checkpoints")
        out.append("  around the level (step 0 is the base): with one checkpoint they rescale it.")
    config = result.get("config") or {}
    if "n_examples" in config:
        out += textwrap.wrap(
            f"C0 is found on this audit's own {config['n_examples']} discovery prompts per task (seed "
            f"{config.get('seed', 0)}); a study's report finds its C0 on the study's prompts (discovery.n_examples), "
            "so the two can differ by a few heads.",
            WIDTH,
        )
    out.append("95 % intervals over the circuit's evaluation prompts.")
    return out
