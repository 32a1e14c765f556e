"""The embedded model's card: a JSON record and a Markdown rendering of it."""

from __future__ import annotations

import json
from pathlib import Path

from forgetlens.utils import atomic_write_text


def write_model_card(out_dir: Path, card: dict) -> None:
    """Write ``card.json`` and ``MODEL_CARD.md`` into ``out_dir``."""
    atomic_write_text(out_dir / "card.json", json.dumps(card, indent=2))
    cfg = card["pretrain_config"]
    lines = [
        "# forgetlens embedded base model",
        "",
        f"A {card['architecture']} with {cfg['n_layers']} layers x {cfg['n_heads']} query heads "
        f"({cfg['n_kv_heads']} key/value heads), d_model {cfg['d_model']}, d_mlp {cfg['d_mlp']}, "
        f"{card['n_parameters']:,} parameters, and a byte-level BPE tokenizer ({cfg['vocab_size']} tokens, "
        "Qwen2 pre-tokenizer), trained from scratch by `forgetlens pretrain-base "
        f"--seed {cfg['seed']}` on a synthetic corpus. Nothing was downloaded.",
        "",
        f"- training (stages 1-2): {cfg['steps']} steps x {cfg['batch_size']} documents, AdamW lr {cfg['lr']}; "
        f"{card['train_seconds']:.0f} s on the build machine ({card.get('train_device', 'cpu')}) for all stages"
        + (
            " (" + ", ".join(f"{stage} {t:.0f} s" for stage, t in card["stage_seconds"].items()) + ")"
            if "stage_seconds" in card
            else ""
        )
        + f", final loss {card['final_loss']}",
        f"- curriculum: the first {cfg['curriculum_steps']} steps draw from "
        + ", ".join(f"{k} {v:.2f}" for k, v in cfg["curriculum_recipe"].items())
        + " (copying forms far faster on repeated sequences alone)",
        "- corpus recipe afterwards (share of documents): "
        + ", ".join(f"{k} {v:.2f}" for k, v in cfg["recipe"].items()),
        f"- format stage: a fresh AdamW at constant lr {cfg.get('format_lr')}, then "
        + "; ".join(
            f"{st['steps']} steps of " + ", ".join(f"{k} {v:.2f}" for k, v in st["recipe"].items())
            for st in cfg.get("format_stages", [])
        )
        + " (multiple-choice letter binding did not form in the mixed corpus above)",
    ]
    if cfg.get("compare_stage"):
        stage = cfg["compare_stage"]
        lines.append(
            f"- comparison stage: a fresh AdamW at constant lr {cfg['format_lr']}, {stage['steps']} steps of "
            + ", ".join(f"{k} {v:.3f}" for k, v in stage["recipe"].items())
            + " (`compare_mcq`: comparison questions from the pretraining half; the fine-tuning target "
            "asks the other half)"
        )
    stages = [cfg] + cfg.get("format_stages", []) + ([cfg["compare_stage"]] if cfg.get("compare_stage") else [])
    penalties = [stage.get("head_sparsity", 0.0) for stage in stages]
    if any(penalties):
        lines.append(
            "- head-sparsity penalty λ · mean over labelled tokens of Σ over heads of ‖W_O,h z_h‖₂ (each "
            "head's write to the residual stream), λ by stage: "
            + ", ".join(f"{lam:g}" for lam in penalties)
            + " (stages 1-2, each format sub-stage, comparison stage)"
        )
    lines += [
        "",
        "## Held-out accuracy",
        "",
        "Top-1 over the whole vocabulary on freshly drawn prompts (evaluation seed differs from the corpus stream; "
        "fact recall is memorised by design, so its held-out prompts re-use the table). `science_mcq` is the "
        "multiple-choice accuracy (best of the four letter logits) on the `facts` science-QA target "
        "(`science_mcq/RELATION` per question kind), `capital_mcq` the same on capital-city questions, "
        "`compare_mcq` the same on target-half comparison questions (the default fine-tuning target).",
        "",
        "| task | accuracy | mean logit diff |",
        "| --- | --- | --- |",
    ]
    for name, acc in card["held_out_accuracy"].items():
        diff = f"{acc['logit_diff']:.2f}" if "logit_diff" in acc else ""
        lines.append(f"| {name} | {acc['accuracy']:.3f} | {diff} |")
    if card.get("circuits"):
        counts = sorted({c["n_prompts"] for c in card["circuits"].values() if "n_prompts" in c})
        prompts = f" Prompts per split: {', '.join(map(str, counts))}." if counts else ""
        lines += [
            "",
            "## Circuits",
            "",
            "Heads ranked by attribution patching, circuit = smallest top-k with normalised faithfulness >= 0.8 "
            "(counterfactual ablation of the other heads, on an evaluation split); Spearman compares attribution "
            "with exact activation patching over all heads (95 % interval from resampling the prompts, where "
            "recorded)." + prompts,
            "",
            "| task | k | share of heads | faithfulness | Spearman(attribution, exact) | heads (layer, head) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, c in card["circuits"].items():
            heads = " ".join(f"{l}.{h}" for l, h in c["circuit_heads"])
            interval = " [{:.3f}, {:.3f}]".format(*c["spearman_ci"]) if "spearman_ci" in c else ""
            lines.append(
                f"| {name} | {c['circuit_k']} | {c['circuit_fraction']:.0%} | "
                f"{c['circuit_faithfulness']:.3f} | {c['spearman_attribution_vs_exact']:.3f}{interval} | "
                f"{heads} |"
            )
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in card["versions"].items()), ""]
    atomic_write_text(out_dir / "MODEL_CARD.md", "\n".join(lines))


def circuit_line(name: str, c: dict) -> str:
    """One task's circuit validation (``embedded_build.validation.validate_task``'s result) as one printable line."""
    interval = " [{:.3f}, {:.3f}]".format(*c["spearman_ci"]) if "spearman_ci" in c else ""
    return (
        f"{name}: Spearman {c['spearman_attribution_vs_exact']:.3f}{interval}, circuit {c['circuit_k']} heads "
        f"({c['circuit_fraction']:.0%}), faithfulness {c['circuit_faithfulness']:.3f}"
    )


def summary_lines(card: dict) -> list[str]:
    """One line per held-out accuracy and per validated circuit, for printing after a build."""
    lines = [
        f"{name}: held-out accuracy {result['accuracy']:.3f}" for name, result in card["held_out_accuracy"].items()
    ]
    lines += [circuit_line(name, c) for name, c in card.get("circuits", {}).items()]
    return lines
