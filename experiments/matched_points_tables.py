"""The base circuits, every model's own DBM circuit and the anatomy at frontier points, from ``forgetlens audit``
files (one or more; the base's circuits must be the same in each), as Markdown; with ``--runs`` and
``--frontier``, first the check that the retrained runs are the frontier's (target accuracy and forward KL at every
checkpoint).

    python experiments/matched_points_tables.py docs/results/smollm2-135m/matched-points-sft.json.gz \
        docs/results/smollm2-135m/matched-points-rl.json.gz --runs runs/matched-points \
        --frontier docs/results/smollm2-135m/dynamic-sampling-frontier-kept-results.json.gz
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

from forgetlens.report.anatomy import anatomy_lines
from forgetlens.report.text import interval_text


def read(path: Path) -> dict:
    """A JSON file, gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return json.load(fh)


def merged_tasks(audits: list[dict]) -> dict[str, dict]:
    """{task: {"circuit", "own_base", "models", "own", "anatomy"}} over every file; refuses files whose base
    circuits differ (they would not be comparable)."""
    tasks: dict[str, dict] = {}
    for audit in audits:
        for task, t in audit["tasks"].items():
            own = t.get("own_circuits", {}).get("dbm")
            entry = tasks.setdefault(
                task,
                {"circuit": t["circuit"], "own_base": own and own["base"], "ceiling": own and own["ceiling"]},
            )
            if entry["circuit"]["heads"] != t["circuit"]["heads"]:
                raise SystemExit(f"{task}: the files' base circuits C0 differ; audit them with the same options")
            if own and entry["own_base"]["heads"] != own["base"]["heads"]:
                raise SystemExit(f"{task}: the files' base DBM circuits differ; audit them with the same options")
            for key, values in (
                ("models", t["models"]),
                ("own", own["models"] if own else {}),
                ("tested", own["heads_tested"] if own else {}),
                ("anatomy", t.get("anatomy", {})),
            ):
                entry.setdefault(key, {}).update(values)
    return tasks


def reproduction(runs: Path, frontier: dict) -> None:
    """Target accuracy and forward KL of each retrained run's checkpoints against the frontier's record."""
    print("| run | checkpoints | target accuracy, largest difference | forward KL, largest relative difference |")
    print("| --- | --- | --- | --- |")
    for run in sorted(p for p in (runs / "runs").iterdir() if p.is_dir()):
        stored = {row["step"]: row for row in frontier["runs"][run.name]["checkpoints"]}
        with open(run / "behaviour.csv", newline="") as fh:
            rows = [row for row in csv.DictReader(fh) if int(row["step"]) in stored]
        acc = max(abs(float(r["target_accuracy"]) - stored[int(r["step"])]["target_accuracy"]) for r in rows)
        kl = max(
            abs(float(r["kl_forward"]) - stored[int(r["step"])]["kl_forward"])
            / max(abs(stored[int(r["step"])]["kl_forward"]), 1e-12)
            for r in rows
        )
        print(f"| {run.name} | {', '.join(r['step'] for r in rows)} | {acc:.3g} | {kl:.2g} |")
    print()


def tables(tasks: dict[str, dict]) -> None:
    for task, t in tasks.items():
        c = t["circuit"]
        print(f"### {task}\n")
        print(f"Base circuit C0 (attribution): {c['k']} heads, faithfulness {c['faithfulness']:.2f}.\n")
        print("| model | faithfulness retention | V(C0) |")
        print("| --- | --- | --- |")
        for label, m in t["models"].items():
            print(f"| {label} | {interval_text(m['retention'])} | {interval_text(m['v_circuit'])} |")
        base, ceiling = t["own_base"], t["ceiling"] or {}
        if base is None:
            continue
        print(
            f"\nOwn circuits by DBM: the base's has {base['k']} heads (faithfulness {base['faithfulness']:.2f}); "
            f"found again on each half of the prompts it keeps {ceiling.get('retention', float('nan')):.2f} of "
            f"itself (the split-half ceiling, halves of {ceiling.get('k_halves')} heads).\n"
        )
        print(
            "| model | heads | retention of the base's | null (mean, p) | overlap | Jaccard | mean \\|Δm\\| on C0 "
            "| faithfulness | necessity of C0's heads, mean (base → model) |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        base_necessity = _mean_necessity(t["tested"].get("base", []))
        for label, own in t["own"].items():
            r = own["retention"]
            print(
                f"| {label} | {own['k']} | {r['value']:.3f} | {r['null_mean']:.3f}, p {r['p_null']:.3g} | "
                f"{own['overlap']['value']:.3f} | {own['jaccard']['value']:.3f} | "
                f"{own['mask_shift']['mean_abs_c0']:.3f} | {own['faithfulness']:.2f} | "
                f"{base_necessity:.3f} → {_mean_necessity(t['tested'].get(label, [])):.3f} |"
            )
        print()
        for label, anatomy in t["anatomy"].items():
            print("\n".join(anatomy_lines(task, label, anatomy)))
            print()


def dcv_lines(tasks: dict[str, dict], pairs: list[tuple[str, str]]) -> None:
    """The paper's DCV, retention(RL) - retention(SFT) of the base DBM circuit, for each (RL label, SFT label)
    pair (a seed's two models), and its mean over the pairs."""
    for task, t in tasks.items():
        own, values = t.get("own", {}), []
        for rl, sft in pairs:
            if rl in own and sft in own:
                values.append(own[rl]["retention"]["value"] - own[sft]["retention"]["value"])
                print(f"- {task}: DCV {rl} - {sft} = {values[-1]:+.3f}")
        if len(values) > 1:
            print(f"- {task}: mean over {len(values)} pairs {sum(values) / len(values):+.3f}")
    print()


def _label_pair(text: str) -> tuple[str, str]:
    """``RL:SFT`` -> (RL, SFT); anything else one line naming --dcv."""
    rl, sep, sft = text.partition(":")
    if not (sep and rl and sft):
        raise SystemExit(f"--dcv {text!r}: expected RL_LABEL:SFT_LABEL, e.g. rl-s1@40:sft-s1@32")
    return rl, sft


def _mean_necessity(tested: list[dict]) -> float:
    return sum(h["necessity"] for h in tested) / len(tested) if tested else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audits", type=Path, nargs="+")
    parser.add_argument("--runs", type=Path, help="the retrained runs' frontier folder")
    parser.add_argument("--frontier", type=Path, help="the frontier's results.json(.gz) they reproduce")
    parser.add_argument(
        "--dcv",
        action="append",
        default=[],
        metavar="RL:SFT",
        help="two models' labels (one seed's RL and SFT) whose DBM retentions give the paper's DCV; repeatable",
    )
    args = parser.parse_args()
    pairs = [_label_pair(pair) for pair in args.dcv]  # checked before any work
    if args.runs and args.frontier:
        reproduction(args.runs, read(args.frontier))
    tasks = merged_tasks([read(path) for path in args.audits])
    tables(tasks)
    if pairs:
        dcv_lines(tasks, pairs)


if __name__ == "__main__":
    main()
