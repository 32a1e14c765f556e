"""A real model's circuits, and whether they look like the mechanisms the literature describes.

    python experiments/real_model_circuits.py smollm2-135m [--n 256] [--exact-n 32] [--threads 1] [--out FILE]

Per default task of the model (``tasks.registry.default_task_names``):

- held-out accuracy (``measure.behaviour.task_accuracy``) on the evaluation split;
- the circuit as ``forgetlens discover`` finds it (``--n`` discovery prompts; attribution, k by bisection to
  faithfulness 0.8, counterfactual ablation) and its faithfulness on the evaluation split;
- Spearman between attribution and exact patching over every head, with a 95 % prompt-bootstrap interval, on
  the first ``--exact-n`` discovery prompts (exact patching costs one forward pass per head).

Then two known-mechanism checks on the circuits found:

- induction (Olsson et al. 2022): on 64 sequences of 20 random tokens repeated once, every head's induction
  score (attention from a token in the repeat to the token after its first occurrence) and previous-token score
  (attention to the token before), and its OV copying score (:func:`ov_copying_scores`).  Induction heads have
  high induction and copying scores, and previous-token heads sit in earlier layers than they do.
- IOI (Wang et al. 2022): every head's direct logit effect on logit(IO) - logit(S) at the last position and its
  attention from there to the IO and S name tokens.  Name movers write the IO name (positive effect) and attend
  to it; negative name movers write against it.

Everything printed is also written as JSON to ``--out``, after each task; a rerun with the same ``--out``, model,
``--n`` and ``--exact-n`` skips the tasks already there, and ``--recheck`` recomputes only the mechanism checks of
the tasks there, on the circuits recorded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from forgetlens.circuits.attribution import attribution_scores
from forgetlens.circuits.circuit import FaithfulnessProbe
from forgetlens.circuits.discover import discover_circuit, task_splits
from forgetlens.circuits.patching import exact_head_effects
from forgetlens.config.options import DiscoveryConfig
from forgetlens.embedded_build.validation import spearman_over_heads
from forgetlens.errors import ForgetlensError
from forgetlens.measure.behaviour import task_accuracy
from forgetlens.measure.cross_model import head_writes
from forgetlens.models.heads import HeadLayout, capture_heads
from forgetlens.models.loading import load_model
from forgetlens.tasks import get_task
from forgetlens.tasks.registry import default_task_names
from forgetlens.utils import atomic_write_text


def name(head) -> str:
    return f"L{head[0]}H{head[1]}"


def parse_name(text: str) -> tuple[int, int]:
    layer, head = text[1:].split("H")
    return int(layer), int(head)


@torch.no_grad()
def patterns_and_writes(model, layout: HeadLayout, ids: torch.Tensor):
    """Attention patterns [layer, batch, head, query, key], per-head outputs z [layer, batch, pos, head, d_head]
    and the residual stream entering the final norm [batch, pos, d_model]."""
    final: list[torch.Tensor] = []
    handle = model.model.norm.register_forward_pre_hook(lambda module, args: final.append(args[0]))
    try:
        with capture_heads(model, layout) as captured:
            out = model(input_ids=ids, output_attentions=True)
    finally:
        handle.remove()
    z = torch.stack([layout.split(c) for c in captured])
    return torch.stack(out.attentions), z, final[0]


def rms_gain(norm: torch.nn.Module) -> tuple[float, torch.Tensor]:
    """(eps, per-channel gain [d_model]) of an RMS norm, read off its output on a vector of ones, so that Llama's
    ``weight`` and Gemma's ``1 + weight`` need no case of their own."""
    eps = getattr(norm, "variance_epsilon", None) or norm.eps
    ones = torch.ones(norm.weight.shape[0], dtype=norm.weight.dtype)
    return eps, norm(ones) * (1 + eps) ** 0.5


def frozen_rms(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The factor by which ``norm``, its scale frozen at input x [..., d_model], multiplies each channel of a part
    of x -> [..., d_model]: linear in that part, and the parts' images sum to norm(x) exactly."""
    eps, gain = rms_gain(norm)
    return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain


def residual_writes(model, layout: HeadLayout, layer: int, z: torch.Tensor) -> torch.Tensor:
    """Each head's write into the residual stream at layer ``layer`` from its output z [batch, head, d_head]
    -> [batch, head, d_model].  On Gemma 3 the attention output passes a norm before the residual add: its scale
    is frozen at the actual attention output, so the heads' writes still sum to what the block adds (checked)."""
    proj = layout.projections(model)[layer]
    writes = head_writes(proj, z[:, None], layout)[:, :, 0].transpose(0, 1)  # [batch, head, d_model]
    if layout.architecture != "gemma3_text":
        return writes
    post = layout.blocks(model)[layer].post_attention_layernorm
    attention_out = proj(z.flatten(1))  # [batch, d_model]
    writes = writes * frozen_rms(post, attention_out)[:, None]
    whole = post(attention_out)  # [batch, d_model]
    error = float((writes.sum(1) - whole).norm() / whole.norm())
    assert error < 1e-5, f"layer {layer}: the heads' writes miss the block's output by {error:.2e} (relative)"
    return writes


def direct_logit_effect(
    model, layout: HeadLayout, z: torch.Tensor, final_resid: torch.Tensor, pos: torch.Tensor, direction: torch.Tensor
) -> torch.Tensor:
    """Each head's write at position ``pos`` [batch] through the final RMS norm (its scale frozen at the actual
    residual) and unembedding, dotted with ``direction`` [batch, d_model] -> [batch, layer, head]."""
    rows = torch.arange(z.shape[1])
    final = frozen_rms(model.model.norm, final_resid[rows, pos])  # [batch, d_model]
    out = torch.zeros(z.shape[1], layout.n_layers, layout.n_heads)
    for layer in range(layout.n_layers):
        writes = residual_writes(model, layout, layer, z[layer, rows, pos])  # [batch, head, d_model]
        out[:, layer] = torch.einsum("bhm,bm->bh", writes * final[:, None], direction)
    return out


@torch.no_grad()
def ov_copying_scores(model, layout: HeadLayout, n_tokens: int = 500) -> torch.Tensor:
    """Each head's OV circuit as a token map (Olsson et al. 2022's copying): for sampled tokens t, the head's value
    and output of t's (input-normed) embedding, through the final norm's gain (and on Gemma 3 the post-attention
    norm's) and the unembedding; the score
    is the mean z-score of t's own logit among all logits (> 0: the head copies what it attends to) ->
    [layer, head]."""
    g = torch.Generator().manual_seed(1)
    vocab = model.get_input_embeddings().weight
    tokens = torch.randint(1000, vocab.shape[0] - 1000, (n_tokens,), generator=g)
    w_u = model.get_output_embeddings().weight * rms_gain(model.model.norm)[1]  # [vocab, d_model]
    kv_heads = model.config.num_key_value_heads
    blocks = layout.blocks(model)
    scores = torch.zeros(layout.n_layers, layout.n_heads)
    for layer, ((norm, attn), proj) in enumerate(zip(layout.attentions(model), layout.projections(model))):
        # Gemma 3's post-attention norm: its gain changes which tokens a write favours; its scale (one number per
        # token) does not change the z-score
        post_gain = rms_gain(blocks[layer].post_attention_layernorm)[1] if layout.architecture == "gemma3_text" else 1
        x = norm(vocab[tokens])  # [token, d_model]
        v = (x @ attn.v_proj.weight.T).view(n_tokens, kv_heads, layout.d_head)  # [token, group, d_head]
        w_o = proj.weight.view(proj.out_features, layout.n_heads, layout.d_head)  # [d_model, head, d_head]
        for head in range(layout.n_heads):
            out = v[:, head // (layout.n_heads // kv_heads)] @ w_o[:, head].T * post_gain  # [token, d_model]
            logits = out @ w_u.T  # [token, vocab]
            own = logits[torch.arange(n_tokens), tokens]
            scores[layer, head] = ((own - logits.mean(-1)) / logits.std(-1)).mean()
    return scores


def induction_check(model, layout: HeadLayout, circuit: list, n: int = 64, length: int = 20) -> dict:
    g = torch.Generator().manual_seed(0)
    vocab = model.get_input_embeddings().num_embeddings
    first = torch.randint(1000, vocab - 1000, (n, length), generator=g)
    ids = torch.cat([first, first], 1)  # [batch, 2 * length]
    att, z, resid = patterns_and_writes(model, layout, ids)
    q = torch.arange(length + 1, 2 * length)  # query positions in the repeat (each token seen before)
    induction = att[:, :, :, q, q - length + 1].mean((1, 3))  # [layer, head]
    previous = att[:, :, :, torch.arange(1, 2 * length), torch.arange(0, 2 * length - 1)].mean((1, 3))
    copying = ov_copying_scores(model, layout)
    top_induction = sorted(
        ((float(induction[l, h]), (l, h)) for l in range(layout.n_layers) for h in range(layout.n_heads)), reverse=True
    )[:10]
    top_previous = sorted(
        ((float(previous[l, h]), (l, h)) for l in range(layout.n_layers) for h in range(layout.n_heads)), reverse=True
    )[:10]
    return {
        "circuit_heads": [
            {
                "head": name(h),
                "induction_score": float(induction[h]),
                "previous_token_score": float(previous[h]),
                "copying_score": float(copying[h]),
            }
            for h in circuit
        ],
        "top_induction_heads": [
            {"head": name(h), "induction_score": s, "copying_score": float(copying[h]), "in_circuit": h in circuit}
            for s, h in top_induction
        ],
        "top_previous_token_heads": [{"head": name(h), "previous_token_score": s} for s, h in top_previous],
        "median_induction_score": float(induction.median()),
    }


def ioi_check(model, tokenizer, layout: HeadLayout, circuit: list, n: int = 64) -> dict:
    examples = get_task("ioi").examples(n, seed=99)
    w_u = model.get_output_embeddings().weight
    effects, to_io, to_s = [], [], []
    for ex in examples:
        ids = tokenizer(ex.clean, return_tensors="pt").input_ids  # [1, pos]
        io, s = (tokenizer.convert_tokens_to_ids(tokenizer.tokenize(w))[0] for w in (ex.answer, ex.distractor))
        att, z, resid = patterns_and_writes(model, layout, ids)
        last = ids.shape[1] - 1
        effects.append(direct_logit_effect(model, layout, z, resid, torch.tensor([last]), (w_u[io] - w_u[s])[None])[0])
        row = ids[0].tolist()
        io_pos = [i for i, t in enumerate(row) if t == io]
        s_pos = [i for i, t in enumerate(row) if t == s]
        to_io.append(att[:, 0, :, last, io_pos].sum(-1))  # [layer, head]
        to_s.append(att[:, 0, :, last, s_pos].sum(-1))
    effect, a_io, a_s = torch.stack(effects).mean(0), torch.stack(to_io).mean(0), torch.stack(to_s).mean(0)
    ranked = sorted(
        ((float(effect[l, h]), (l, h)) for l in range(layout.n_layers) for h in range(layout.n_heads)),
        key=lambda x: -abs(x[0]),
    )[:12]
    return {
        "top_heads_by_direct_effect": [
            {
                "head": name(h),
                "direct_logit_effect": e,
                "attention_to_io": float(a_io[h]),
                "attention_to_s": float(a_s[h]),
                "in_circuit": h in circuit,
            }
            for e, h in ranked
        ]
    }


def mechanism_checks(model, tokenizer, layout: HeadLayout, task_name: str, entry: dict, circuit: list) -> None:
    """The known-mechanism check of ``task_name`` (induction or IOI; none for other tasks) on ``circuit``, into
    ``entry["mechanism"]``, and printed."""
    if task_name not in ("induction", "ioi"):
        return
    model.set_attn_implementation("eager")  # attention patterns for the mechanism checks
    entry["mechanism"] = (
        induction_check(model, layout, circuit)
        if task_name == "induction"
        else ioi_check(model, tokenizer, layout, circuit)
    )
    model.set_attn_implementation("sdpa")
    print(json.dumps(entry["mechanism"], indent=1), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--tasks", default=None, help="comma-separated (default: the model's default set)")
    parser.add_argument("--n", type=int, default=256, help="discovery and evaluation prompts per task")
    parser.add_argument("--exact-n", type=int, default=32, help="prompts for the attribution/exact comparison")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="only recompute the known-mechanism checks of the tasks already in --out, on their recorded circuits",
    )
    args = parser.parse_args()
    if args.recheck and not (args.out and Path(args.out).exists()):
        raise SystemExit("error: --recheck needs --out naming an existing results file")
    torch.set_num_threads(args.threads)
    try:
        loaded = load_model(args.model)
    except ForgetlensError as error:
        raise SystemExit(f"error: {error}") from None
    model, tokenizer = loaded.model, loaded.tokenizer
    layout = HeadLayout.of(model)
    names = args.tasks.split(",") if args.tasks else default_task_names(args.model)
    result = {"model": args.model, "provenance": loaded.provenance, "n": args.n, "exact_n": args.exact_n, "tasks": {}}
    if args.out and Path(args.out).exists():  # resume: keep the tasks an earlier run with these settings measured
        earlier = json.loads(Path(args.out).read_text())
        if {k: earlier.get(k) for k in ("model", "n", "exact_n")} == {k: result[k] for k in ("model", "n", "exact_n")}:
            result["tasks"] = earlier["tasks"]
    print(
        f"{'task':<18}{'accuracy':>9}  {'k':>3}  {'f (disc)':>8}  {'f (eval)':>8}  {'Spearman [95% CI]':<24} circuit",
        flush=True,
    )
    if args.recheck:
        for task_name, entry in result["tasks"].items():
            mechanism_checks(model, tokenizer, layout, task_name, entry, [parse_name(h) for h in entry["circuit"]])
            atomic_write_text(args.out, json.dumps(result, indent=1))
        return
    for task_name in names:
        if task_name in result["tasks"]:
            continue
        task = get_task(task_name)
        discovery, evaluation = task_splits(tokenizer, task, args.n, 0)
        accuracy = task_accuracy(model, evaluation)["accuracy"]
        circuit = discover_circuit(model, tokenizer, task, DiscoveryConfig(n_examples=args.n, seed=0))
        probe = FaithfulnessProbe(model, layout, evaluation, metric="logit_diff")
        f_eval = probe.faithfulness(circuit.heads)
        small = discovery.subset(range(min(args.exact_n, len(discovery))))
        rho = spearman_over_heads(
            attribution_scores(model, layout, small, metric="logit_diff").numpy(),
            exact_head_effects(model, layout, small, metric="logit_diff").numpy(),
        )
        entry = {
            "accuracy": accuracy,
            "k": circuit.k,
            "faithfulness_discovery": circuit.faithfulness,
            "faithfulness_evaluation": f_eval,
            "spearman_attribution_vs_exact": list(rho),
            "circuit": [name(h) for h in circuit.heads],
        }
        result["tasks"][task_name] = entry
        print(
            f"{task_name:<18}{accuracy:>9.3f}  {circuit.k:>3}  {circuit.faithfulness:>8.3f}  {f_eval:>8.3f}  "
            f"{rho[0]:.3f} [{rho[1]:.3f}, {rho[2]:.3f}]     {' '.join(entry['circuit'])}",
            flush=True,
        )
        mechanism_checks(model, tokenizer, layout, task_name, entry, circuit.heads)
        if args.out:
            atomic_write_text(args.out, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
