"""The anatomy of a tuned model's change in words: one paragraph per (task, tuned model), from
``analysis.anatomy.summarise_anatomy``'s output (rendering only)."""

from __future__ import annotations

import math

from forgetlens.report.text import interval_text, number_text, percent_text


def _num(stat: dict, pct: bool = False) -> str:
    """``value [low, high]`` to the digits its interval supports (whole percentages with ``pct``, signed
    otherwise); ``n/a`` when undefined."""
    if pct:
        value, low, high = stat["value"], stat["ci_low"], stat["ci_high"]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        if low is None or (isinstance(low, float) and math.isnan(low)):
            return percent_text(value)
        return f"{percent_text(value)} [{percent_text(low)}, {percent_text(high)}]"
    text = interval_text(stat, prose=True)
    unsigned = text.startswith(("-", "n/a", "0 (", "exactly")) or float(text.split(" ")[0]) == 0
    return text if unsigned else f"+{text}"


def _block(group: str, block: list[int]) -> str:
    return f"weights/{group}@{block[0]}-{block[1] - 1}"


def anatomy_lines(task: str, label: str, a: dict) -> list[str]:
    """Where ``label``'s change on ``task`` lives, as a few lines of text (the share of the change each part
    induces in the base model, 95 % intervals over prompts)."""
    m = a["metric"]

    def share(name: str) -> str:
        return _num(a["induced"][name][m]["share"], pct=True) if name in a["induced"] else "n/a"

    b = a["behaviour"]
    head = (
        f"{task}, {label}: {m} {number_text(b[m]['base'])} -> {number_text(b[m]['tuned'])} (change "
        f"{_num(b[m]['change'])}); top-1 accuracy {number_text(b['correct']['base'])} -> "
        f"{number_text(b['correct']['tuned'])} "
        f"on the same {a['n_prompts']} prompts"
    )
    change = b[m]["change"]
    if change["ci_low"] is not None and change["ci_low"] <= 0 <= change["ci_high"]:
        return [head, f"  the change in {m} is within the prompts' noise (its interval covers 0): no part to assign"]
    lines = [
        head,
        f"  share of the change carried by: C0 jointly {share('joint_total/C0')} (its own weights "
        f"{share('joint_local/C0')}); all heads {share('joint_total/all_heads')}; all MLPs {share('mlp_total')}",
    ]
    groups = [n.split("/", 1)[1] for n in a["induced"] if n.startswith("weights/") and "@" not in n]
    names = {"embeddings": "embeddings (tied to the unembedding)" if a["tied_embeddings"] else "embeddings"}
    lines.append(
        "  weights copied from the tuned model: "
        + "; ".join(f"{names.get(g, g)} {share('weights/' + g)}" for g in groups)
        + f"; interaction {_num(a['interaction'][m], pct=True)}"
    )
    for g, blocks in a["blocks"].items():
        if blocks:  # the search's last pair of halves: report the one it would refine
            pair = blocks[-2:]
            best = max(pair, key=lambda blk: abs(a["induced"][_block(g, blk)][m]["effect"]["value"]))
            lines.append(f"  {g} narrowed to layers {best[0]}-{best[1] - 1}: {share(_block(g, best))} of the change")
    heads = [h for h in a["heads_outside_circuit"] if h["share_exact"] is not None][:3]
    if heads:
        lines.append(
            "  heads outside C0 (exact, total): "
            + "; ".join(f"L{h['layer']}H{h['head']} {_num(h['share_exact'], pct=True)}" for h in heads)
        )
    fmt = a["format"]["tuned"]
    wrong = {k: v for k, v in fmt["top1_kind_when_wrong"].items() if v}
    moved = a["format"]["mass_moved"]
    lines.append(
        f"  when wrong ({fmt['n_wrong']} prompts) the tuned model's top-1 is: "
        + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in wrong.items()) or "-")
        + "; probability moved: "
        + ", ".join(f"{k.replace('_', ' ')} {_num(stat)}" for k, stat in moved.items())
    )
    return lines
