"""The own-circuit tables of a study's results.json, as Markdown (the paper's table shape: per task, method and
model, circuit size, retention of the base circuit with its null and ceiling, overlap, Jaccard, faithfulness).

    python experiments/own_circuits_tables.py runs/smollm2-own-circuits/results.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from forgetlens.pipeline.results import read_results
from forgetlens.report.text import interval_text


def cell(stat: dict | None, digits: int = 2) -> str:
    """``value [low, high]`` to ``digits`` decimals (the report's form)."""
    return interval_text(stat, f"{{:.{digits}f}}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    results = read_results(args.results)
    print(
        "| task | method | model | \\|C\\| | retention of C0 | null | ceiling | overlap | Jaccard | seed Jaccard "
        "| faithfulness | own-objective share |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for task, t in results["tasks"].items():
        for method, own in (t.get("own_circuits") or {}).items():
            base, ceiling = own["base"], own["ceiling"] or {}
            print(
                f"| {task} | {method} | base | {base['k']} | 1 | | {ceiling.get('retention', float('nan')):.2f} "
                f"(halves k {ceiling.get('k_halves')}) | 1 | 1 | | {base['faithfulness']:.2f} | "
                f"{base.get('objective_faithfulness', float('nan')):.2f} |"
            )
            for group, g in own["groups"].items():
                objective = [
                    own["models"][f"{group.split('@')[0]}-s{s}@{group.split('@')[1]}"].get(
                        "objective_faithfulness", float("nan")
                    )
                    for s in g["retention"]["seeds"]
                ]
                print(
                    f"| {task} | {method} | {group} | {g['k']['value']:.1f} | {cell(g['retention'])} | "
                    f"{g['null_retention']['value']:.2f} | | {cell(g['overlap'])} | {cell(g['jaccard'])} | "
                    f"{g['seed_jaccard']['mean']:.2f} | {cell(g['faithfulness'])} | "
                    f"{sum(objective) / len(objective):.2f} |"
                )
    print()
    print("| task | method | difference (paired by seed) | retention | Jaccard |")
    print("| --- | --- | --- | --- | --- |")
    for task, t in results["tasks"].items():
        for method, own in (t.get("own_circuits") or {}).items():
            for pair, d in own["dcv_paper"].items():
                print(f"| {task} | {method} | {pair} | {cell(d['retention'], 3)} | {cell(d['jaccard'], 3)} |")
    print()
    print(
        "| task | comparison | vulnerable heads of C0 (m(SFT) < m(other) − δ) | mirror (m(other) < m(SFT) − δ) "
        "| mean \\|Δm\\| on C0: SFT / other |"
    )
    print("| --- | --- | --- | --- | --- |")
    for task, t in results["tasks"].items():
        own = (t.get("own_circuits") or {}).get("dbm")
        if not own:
            continue
        for pair, v in own.get("vulnerable", {}).items():
            other = pair.split(" vs ")[1]
            shifts = [
                own["groups"].get(f"{m}@{results['config']['finetune']['steps']}", {}).get("mask_shift_abs_c0")
                for m in ("sft", other)
            ]
            print(
                f"| {task} | {pair} | {cell(v['n_sft_below'], 1)} | {cell(v['n_mirror'], 1)} | "
                f"{' / '.join(cell(s, 3) for s in shifts)} |"
            )


if __name__ == "__main__":
    main()
