"""report.html: one self-contained page (figures inlined as base64 PNG), built from results.json alone."""

from __future__ import annotations

import base64
import math
from pathlib import Path

from forgetlens.analysis.runs import RunId, pair_comparison, pair_label
from forgetlens.analysis.summary import GENERAL_LABELS, MIN_EFFECT, curve, prior_tasks, runs_by_method
from forgetlens.config.methods import METHODS
from forgetlens.report.anatomy import anatomy_lines
from forgetlens.report.figures import FIGURES, tradeoff
from forgetlens.report.own_circuits import own_circuit_differences, own_circuit_table
from forgetlens.report.text import MIN_FIT_POINTS, interval_text, number_text, p_text
from forgetlens.utils import atomic_write_text


def _seed_words(n: int) -> str:
    return "one seed" if n == 1 else f"{n} seeds"


def _over(stat: dict | None) -> str:
    """What ``stat``'s interval is over, in words."""
    stat = stat or {}
    low = stat.get("ci_low")
    if low is None or not math.isfinite(low):
        return "one seed: no interval" if stat.get("n_seeds") == 1 else "no interval"
    if stat.get("n_seeds", 1) > 1:
        return f"95 % t-interval over {stat['n_seeds']} seeds"
    if "n_questions" in stat:
        return "95 % interval over the evaluation questions"
    return "95 % bootstrap interval over prompts"


def _adaptation_sentences(results: dict) -> list[str]:
    threshold = results["accuracy_threshold"]
    curves, gains = results["curves"], results.get("target_gain") or {}
    out = []
    for method, names in runs_by_method(results).items():
        acc = curves[method]["target_accuracy"]
        steps = acc["steps"]
        reached = [results["runs"][n]["steps_to_threshold"] for n in names]
        hit = [s for s in reached if s is not None]
        sentence = (
            f"{method.upper()}'s held-out target accuracy went from {number_text(acc['mean'][0])} to "
            f"{number_text(acc['mean'][-1])} by step {steps[-1]} ({_seed_words(len(names))}"
            + (", mean" if len(names) > 1 else "")
            + ")"
        )
        gain = gains.get(method)
        if gain:
            stat = gain["seeds"] if gain["seeds"]["n_seeds"] > 1 else gain["questions"]
            low = stat.get("ci_low")
            verdict = "it adapted" if low is not None and low > 0 else "no clear adaptation"
            sentence += (
                f"; {method.upper()}'s held-out target gain at step {gain['step']} is {interval_text(stat)} "
                f"({_over(stat)}): {verdict}"
            )
        if hit:
            first = steps[1] if len(steps) > 1 else steps[0]
            sentence += (
                f". It reached {threshold:.0%} target accuracy in {len(hit)} of {len(names)} runs, by step {min(hit)}"
            )
            if min(hit) == first:
                sentence += (
                    f": the first checkpoint measured after the start (steps {', '.join(map(str, steps))}), so when "
                    "in between is not known"
                )
        else:
            sentence += f". It never reached {threshold:.0%} target accuracy"
        out.append(sentence + ".")
    return out


def _claim_sentences(results: dict) -> list[str]:
    claims = results.get("claims") or {}
    if not claims:
        return []
    a = claims["adaptation"]
    diff = a["difference_sft_minus_rl"]
    out = [
        f"Claim 1, SFT adapts faster than RL: the mean target-accuracy gain over checkpoints, SFT minus RL, is "
        f"{interval_text(diff)} ({_over(diff)}); verdict: {a['verdict']}."
    ]
    for t, c in claims["circuits"].items():
        dcv, forget = c["dcv_circuit"], c["forgetting_difference_sft_minus_rl"]
        sentence = (
            f"Claim 2 on {t} at step {c['step']}, SFT damages the base circuit more than RL: DCV(C0) = V_SFT(C0) - "
            f"V_RL(C0) = {interval_text(dcv)} ({_over(dcv)}); verdict: {c['dcv_verdict']}. Top-1 accuracy lost on {t} "
            f"(accuracy points, base minus step {c['step']}), SFT minus RL: {interval_text(forget)} "
            f"({_over(forget)}); verdict: {c['forgetting_verdict']}."
        )
        joint = c.get("joint")
        if joint:
            sentence += (
                f" On the circuit's own prompts ({joint['metric']}), DCV from C0's joint damage is "
                f"{interval_text(joint['dcv_joint_total'])} with everything C0 reads changed "
                f"({joint['dcv_joint_total_verdict']}) and {interval_text(joint['dcv_joint_local'])} from C0's own "
                f"weights ({joint['dcv_joint_local_verdict']}); top-1 accuracy lost, SFT minus RL, "
                f"{interval_text(joint['forgetting_same_prompts'])} ({joint['forgetting_same_prompts_verdict']})."
            )
        out.append(sentence)
    return out


def _fit_sentence(results: dict) -> str:
    fits = results["forgetting_predictors"]["pooled"]
    n = fits["n_points"]
    if n < MIN_FIT_POINTS:
        return (
            f"Which signal tracks forgetting is not estimated: {n} (task, checkpoint) points are too few for a fit "
            f"(the report needs {MIN_FIT_POINTS}; more checkpoints, tasks or seeds give more)."
        )

    def r2(key: str) -> str:
        f = fits[key]
        return interval_text({"value": f["r2"], "ci_low": f["ci_low"], "ci_high": f["ci_high"]})

    return (
        f"Forgetting across {n} (task, checkpoint) points: R² against forward KL = {r2('kl')}, against V(C0) = "
        f"{r2('v_circuit')}, against both = {r2('both')} (95 % bootstrap intervals over the points)."
    )


ONE_RUN_PER_METHOD = (
    "This study trains each method at one learning rate for the same number of steps: it shows what those runs did, "
    "not which method forgets less. SFT and RL adapt at different speeds, so one run each at equal steps compares "
    "two points, not two methods; `forgetlens frontier` trains each method over learning rates and steps and "
    "compares them at matched target accuracy."
)
"""The report's first sentence for a study without a learning-rate grid."""


def summary_sentences(results: dict) -> list[str]:
    """The findings in sentences, generated from the numbers, each claim with its verdict."""
    return [text for text, _ in summary_with_sources(results)]


def summary_with_sources(results: dict) -> list[tuple[str, str | None]]:
    """Each sentence of :func:`summary_sentences` with the id of the page's table or figure its numbers come from
    (None for a sentence without numbers of its own)."""
    n_seeds = len(results["seeds"])
    claims = _claim_sentences(results)
    fits = results["forgetting_predictors"]["pooled"]["n_points"] >= MIN_FIT_POINTS
    lines: list[tuple[str, str | None]] = (
        [(ONE_RUN_PER_METHOD, None)] if not results["config"].get("sft_lr_grid") else []
    )
    lines += [(text, "methods") for text in _adaptation_sentences(results)]
    lines += [(text, "methods" if i == 0 else "dcv") for i, text in enumerate(claims)]
    lines.append((_fit_sentence(results), "forgetting_vs_predictors" if fits else None))
    lines.append(
        (
            "Verdicts: held (or reversed) when the 95 % interval excludes 0 and the difference is at least "
            f"{MIN_EFFECT} (1 point of accuracy or retention, 1 % of a task's total effect), negligible when it "
            "excludes 0 with a smaller difference or is exactly 0 (nothing differed), inconclusive otherwise. "
            + (
                f"Intervals are over the {n_seeds} seeds (Student t) where seeds vary."
                if n_seeds > 1
                else "With one seed there is no interval over seeds: behaviour claims are inconclusive by rule, and "
                "circuit intervals are over that seed's prompts."
            ),
            None,
        )
    )
    return lines


def setup_rows(results: dict) -> list[tuple[str, str]]:
    """What a reader needs to read the page: the model and where it came from, the target task with an example,
    the budgets, the prior tasks at the start, how KL is defined and how often its samples were cut."""
    cfg, ft = results["config"], results["config"]["finetune"]
    model, layout = results["model"], results["layout"]
    prov = model.get("provenance") or {}
    source = model["name"]
    if prov:
        source = (
            f"{prov.get('hf_name', model['name'])} (--model {model['name']}), from the "
            f"{prov.get('distribution')} {prov.get('distribution_version')} package's {prov.get('file')} "
            f"(sha256 {str(prov.get('sha256', ''))[:12]}...), {prov.get('quantisation')}"
        )
    rows = [
        ("model", source),
        (
            "heads",
            f"{layout['architecture']}, {layout['n_layers']} layers x {layout['n_heads']} query heads = "
            f"{layout['n_layers'] * layout['n_heads']} heads, d_head {layout['d_head']}",
        ),
    ]
    target = f"data file {ft['data']}" if ft.get("data") else f"built-in {ft['synthetic_target']!r}"
    first = next(iter(results["runs"].values()))
    example = results.get("target_example")
    shown = f'; for example "{example["question"]}" -> "{example["answer"]}"' if example else ""
    rows.append(("target task", f"{target}, {first['n_eval_records']} held-out evaluation questions{shown}"))
    for method, names in runs_by_method(results).items():
        budget = results["runs"][names[0]]["budget"]
        kind = METHODS.get(RunId.parse(method).method)  # None for a group that is no registered method
        rates = sorted({results["runs"][n].get("lr") for n in names} - {None})  # each run's own (schema 1.7)
        if not rates:  # an older results.json: the config's rate of the method's trainer
            rates = [ft[kind.learning_rate_option]] if kind else []
        text = (
            f"{ft['steps']} optimizer steps x {ft['prompts_per_step']} prompts, learning rate "
            f"{', '.join(f'{r:g}' for r in rates)}, "
            f"{budget.get('prompt_tokens', 'n/a')} prompt tokens"
        )
        if kind and kind.trainer == "rl":
            rl = ft["rl"]
            zero = [x for n in names for x in results["runs"][n]["budget"].get("frac_reward_zero_std", [])]
            text += (
                f"; {rl['num_generations']} completions per prompt (at most {rl['max_completion_length']} tokens, "
                f"temperature {rl['temperature']:g}), loss {rl['loss_type']}, KL penalty beta {rl['beta']:g}"
            )
            if zero:
                text += f"; {sum(zero) / len(zero):.0%} of groups had one reward for every completion (no signal)"
        rows.append((f"budget: {method}", text))
    base_rows = first["checkpoints"][0]["prior"]
    rows.append(
        (
            "prior tasks at the start",
            "; ".join(
                f"{t}: accuracy {number_text(base_rows[t]['accuracy'])} on {ft['prior_eval_examples']} prompts, "
                f"circuit C0 of {results['tasks'][t]['circuit']['k']} heads (faithfulness "
                f"{number_text(results['tasks'][t]['circuit']['faithfulness'])})"
                for t in prior_tasks(results)
            ),
        )
    )
    cut = [c.get("kl_samples_cut") for r in results["runs"].values() for c in r["checkpoints"][:1]]
    cut = [c for c in cut if c is not None]
    kl = (
        f"forward KL(base || tuned) of the next-token distributions, summed over a completion's tokens (nats per "
        f"completion), on {ft['kl_prompts'] or 'every'} held-out target prompts x {ft['kl_samples']} completion(s) "
        f"sampled once from the base (at most {ft['kl_max_new_tokens'] or ft['max_new_tokens']} tokens)"
    )
    if cut:
        kl += f"; {max(cut):.0%} of those samples were cut at that cap, so their KL covers only the cap's tokens"
    rows.append(("KL", kl))
    rows.append(("seeds", f"{', '.join(map(str, results['seeds']))}; {cfg['n_boot']} bootstrap resamples"))
    versions = results["versions"]
    rows.append(
        (
            "versions",
            ", ".join(f"{k} {versions[k]}" for k in ("forgetlens", "torch", "transformers", "trl") if k in versions),
        )
    )
    return rows


def summary_table(results: dict) -> str:
    """A plain-text table for the terminal: per method, the last checkpoint's behaviour and circuits."""
    tasks = prior_tasks(results)
    head = f"{'method':<14}{'step':>6}{'target acc':>12}{'KL':>8}{'retention':>11}" + "".join(
        f"{'V(C0) ' + t[:10]:>18}" for t in tasks
    )
    lines = [head, "-" * len(head)]
    for method, curves in results["curves"].items():
        step = curves["target_accuracy"]["steps"][-1]
        row = (
            f"{method:<14}{step:>6}{curves['target_accuracy']['mean'][-1]:>12.3f}"
            f"{curves['kl_forward']['mean'][-1]:>8.3f}{curves['mean_prior_retention']['mean'][-1]:>11.3f}"
        )
        row += "".join(f"{number_text(curves[f'v_circuit/{t}']['mean'][-1]):>18}" for t in tasks)
        lines.append(row)
    return "\n".join(lines)


Table = tuple[list[str], list[list[str]]]
"""A table as (header cells, rows of cells): plain text, escaped by the template."""


def _methods_table(results: dict) -> Table:
    """Per method and checkpoint: target accuracy, mean prior retention, each prior task's top-1 accuracy, KL (and
    the general measures): the mean over seeds with its 95 % t-interval when several seeds ran, the one seed's value
    otherwise."""

    def cell(c: dict, i: int) -> str:
        low = c["low"][i] if c["n_seeds"] > 1 else None
        return interval_text(
            {"value": c["mean"][i], "ci_low": low, "ci_high": c["high"][i] if low is not None else None}
        )

    rows = []
    general = [k for k in next(iter(results["curves"].values())) if k.startswith("general/")]
    tasks = prior_tasks(results)
    for method, curves in results["curves"].items():
        acc, ret = curves["target_accuracy"], curves["mean_prior_retention"]
        task_acc = [curve(results, method, lambda n, r, t=t: r["prior"][t]["accuracy"]) for t in tasks]
        for i, step in enumerate(acc["steps"]):
            rows.append(
                [method, str(step), cell(acc, i), cell(ret, i)]
                + [cell(c, i) for c in task_acc]
                + [cell(curves["kl_forward"], i)]
                + [cell(curves[g], i) for g in general]
                + [str(acc["n_seeds"])]
            )
    head = ["method", "step", "target accuracy", "mean prior retention"] + [f"{t} top-1 accuracy" for t in tasks]
    head += [str(GENERAL_LABELS.get(g, g)) for g in ["kl_forward"] + general] + ["seeds"]
    return head, rows


def _last_stats(results: dict, task: str, method: str, names: list[str], last: int) -> dict | None:
    """A method's statistics at its last step on ``task``: over seeds when several ran, else its one run's."""
    agg = results["tasks"][task]["seeds"]["models"].get(f"{method}@{last}")
    return agg or results["tasks"][task]["models"].get(f"{names[0]}@{last}")


def _circuit_table(results: dict) -> Table:
    rows = []
    for t in prior_tasks(results):
        c = results["tasks"][t]["circuit"]
        for method, names in runs_by_method(results).items():
            last = results["runs"][names[0]]["checkpoints"][-1]["step"]
            src = _last_stats(results, t, method, names, last)
            cells = [
                interval_text(src.get(k)) if src else "n/a" for k in ("v_circuit", "retention", "preserved_fraction")
            ]
            rows.append([t, str(c["k"]), number_text(c["faithfulness"]), f"{method}@{last}"] + cells)
    head = ["task", "|C0|", "F0(C0)", "model", "V(C0)", "faithfulness retention", "preserved fraction"]
    return head, rows


def _dcv_table(results: dict) -> Table | None:
    """DCV(C0) per task at the last step and where the compared methods reached the same target accuracy or KL
    (``tasks[TASK].dcv`` and ``matched_levels``); None without a compared pair."""
    if not any(results["tasks"][t]["dcv"] for t in prior_tasks(results)):
        return None
    rows = []
    for t in prior_tasks(results):
        task = results["tasks"][t]
        for pair, stats in task["dcv"].items():
            label, compared = pair_label(pair), pair_comparison(pair)
            seed = str(label.run)
            if label.step is not None:
                level = f"step {label.step}"
            else:
                kind, _, fraction = str(label.level).partition(":")
                matched = (
                    task["matched_levels"].get(pair.removesuffix(f"@{label.level}"), {}).get(f"@{label.level}", {})
                )
                unit = "target accuracy" if kind == "acc" else "forward KL (nats per completion)"
                level = (
                    f"matched {unit} {number_text(matched.get('level'))} ({fraction} of the way from the base to "
                    "the level both runs reached)"
                )
            rows.append(
                [t, f"{compared.first}{seed} - {compared.second}{seed}", level, interval_text(stats["v_circuit"])]
            )
    head = ["task", "pair", "where", "DCV(C0) [95 % bootstrap interval over prompts]"]
    return head, rows


def _benchmark_table(results: dict) -> tuple[Table, str] | None:
    """Standard-benchmark scores of the base and each run's last checkpoint, with the change from the base, and a
    line giving each benchmark's item count; None when no benchmark ran."""
    scores = (results.get("benchmarks") or {}).get("scores") or {}
    base = scores.get("base", {})
    if not base:
        return None
    tasks = sorted(base)
    head = ["model"] + [f"{t} ({base[t]['metric']})" for t in tasks]
    rows = []
    for label, row in scores.items():
        cells = [label]
        for t in tasks:
            if t not in row:
                cells.append("n/a")
            elif label == "base":
                cells.append(number_text(row[t]["score"]))
            else:
                cells.append(f"{row[t]['score']:.3f} ({row[t]['score'] - base[t]['score']:+.3f})")
        rows.append(cells)
    return (head, rows), ", ".join(f"{t}: n={base[t]['n']}" for t in tasks)


def _environment():
    """The report's template environment: every value is HTML-escaped unless the template says otherwise, and
    the template says so nowhere (the figures are base64 text, which escaping leaves unchanged)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("forgetlens.report", "templates"), autoescape=True, undefined=StrictUndefined
    )


def paired_test_table(results: dict) -> Table | None:
    """Each prior task's paired tests on the same prompts (``analysis.summary.paired_prior_tests``)."""
    rows = []
    for task, comparisons in (results.get("paired_tests") or {}).items():
        for name, test in comparisons.items():
            mc, logp = test["mcnemar_top1"], test["logp_answer"]
            rows.append(
                [
                    task,
                    name,
                    f"{mc['only_a']} / {mc['only_b']}",
                    p_text(mc["p"]),
                    interval_text(logp),
                    p_text(logp["p"]),
                ]
            )
    if not rows:
        return None
    head = ["task", "comparison (second - first)", "answered by only first / only second", "McNemar p"]
    return head + ["log p(answer) difference, nats", "p"], rows


def divergence_table(results: dict) -> Table | None:
    """Where each run's last checkpoint departs most from the base in the text: per target (and chat) prompt, the
    tokens of largest KL(base || tuned) along the base's sampled completion or the tuned model's own."""
    rows = []
    for name, run in results["runs"].items():
        view = run.get("divergence")
        if not view:
            continue
        for kind in ("target", "chat"):
            for i, prompt in enumerate(view.get(kind) or []):
                for top in prompt["top"][:3]:
                    completion = "".join(prompt[top["source"]]["tokens"])
                    rows.append(
                        [
                            f"{name}@{view['step']}",
                            f"{kind} {i + 1}",
                            f"{top['source']}'s: {completion!r}",
                            f"{top['token']!r} (token {top['position'] + 1})",
                            number_text(top["kl"]),
                            number_text(prompt[top["source"]]["kl_sum"]),
                        ]
                    )
    if not rows:
        return None
    head = ["model", "prompt", "completion", "token", "KL there (nats)", "KL summed (nats)"]
    return head, rows


def render(results: dict) -> str:
    """report.html's text for ``results`` (a results.json that passed :func:`pipeline.results.read_results`)."""
    lead = tradeoff(results)
    figures = []
    for key, (title, fn) in FIGURES.items():
        figure = fn(results)
        if figure is not None:
            figures.append(
                {
                    "id": key,
                    "title": title,
                    "data": base64.b64encode(figure.png).decode(),
                    "legend": ", ".join(figure.legend),
                    "labels": ", ".join(figure.labels),
                }
            )
    n_seeds = len(results["seeds"])
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            lead={
                "data": base64.b64encode(lead.png).decode(),
                "legend": ", ".join(lead.legend),
            },
            setup=setup_rows(results),
            summary=summary_with_sources(results),
            methods=_methods_table(results),
            methods_over=(
                f"mean over {n_seeds} seeds [95 % t-interval over seeds]"
                if n_seeds > 1
                else "one seed: its values, no interval"
            ),
            circuits=_circuit_table(results),
            circuits_over=(
                f"mean over {n_seeds} seeds [95 % t-interval over seeds]"
                if n_seeds > 1
                else "one seed [95 % paired bootstrap interval over the circuit's evaluation prompts]"
            ),
            dcv=_dcv_table(results),
            divergence=divergence_table(results),
            paired=paired_test_table(results),
            benchmarks=_benchmark_table(results),
            own_circuits=own_circuit_table(results),
            own_differences=own_circuit_differences(results),
            figures=figures,
            schema_version=results["schema_version"],
            anatomy=[
                anatomy_lines(t, label, a)
                for t in prior_tasks(results)
                for label, a in (results["tasks"][t].get("anatomy") or {}).items()
            ],
        )
    )


def write_report(results: dict, path: Path) -> None:
    atomic_write_text(path, render(results))
