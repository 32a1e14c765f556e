"""Behaviour at a checkpoint: target accuracy, prior-task retention, forward KL to the base model.

Forward KL, RL's Razor's forgetting predictor, is E_{x ~ target}[KL(pi_0(.|x) || pi(.|x))] over whole
completions.  forgetlens estimates it on the evaluation prompts by sampling completions y ~ pi_0
(``kl_samples`` per prompt, drawn once per run so every checkpoint is scored on the same samples) and
summing, along each sampled completion, the exact next-token KL

    KL_seq(x) ~= mean_y sum_t KL(pi_0(.|x, y_<t) || pi(.|x, y_<t)),

which is unbiased for the sequence-level KL (chain rule) and has lower variance than the plain
log-ratio estimator log pi_0(y|x) - log pi(y|x).  A sample cut at ``kl_max_new_tokens`` sums its first tokens
only, a lower bound; ``kl_samples_cut`` records how many were cut.  ``tests/algorithms/test_behaviour.py``
checks the sum against a prefix-by-prefix reference and its mean against the log-ratio estimator on long samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from forgetlens.models.forward import answer_logits, model_device
from forgetlens.targets.general import CHAT_PROMPTS, general_knowledge_records
from forgetlens.targets.rewards import score_reply
from forgetlens.targets.science_qa import user_text
from forgetlens.tasks.base import PriorTask, TaskBatch, encode_examples, task_metric
from forgetlens.utils import right_pad

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from forgetlens.config.options import FinetuneConfig  # annotations only


def chat_prompts(tokenizer: PreTrainedTokenizerBase, records: list[dict]) -> list[str]:
    """Each record's prompt rendered with the tokenizer's chat template, ready for the assistant turn."""
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text(r)}], tokenize=False, add_generation_prompt=True
        )
        for r in records
    ]


def _left_padded(tokenizer: PreTrainedTokenizerBase, texts: list[str], device) -> dict:
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    return {k: v.to(device) for k, v in enc.items()}


def _stop_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids = {tokenizer.eos_token_id}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return [i for i in ids if i is not None]


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    sample: bool = False,
    batch_size: int | None = None,
    seed: int = 0,
) -> list[list[int]]:
    """Completion token ids for each prompt (greedy, or sampled at temperature 1 with ``seed``), each cut after
    its first end token. Decoded by ``training.rollouts.sample_completions`` (the prompts' common prefix computed
    once; the same tokens as ``model.generate``), ``batch_size`` prompts at a time (default: all at once when
    greedy, 64 when sampling, as ``generate`` was called before, so the same seed draws the same samples)."""
    from forgetlens.training.rollouts import sample_completions

    stop = _stop_ids(tokenizer)
    size = batch_size or (64 if sample else max(len(prompts), 1))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    out: list[list[int]] = []
    try:
        for start in range(0, len(ids), size):
            out += sample_completions(model, ids[start : start + size], max_new_tokens, stop, pad, greedy=not sample)
    finally:
        torch.random.set_rng_state(generator_state)
    return out


def target_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: list[dict], max_new_tokens: int
) -> tuple[float, list[float]]:
    """Greedy accuracy on target records -> (mean, per-record scores)."""
    completions = generate(model, tokenizer, chat_prompts(tokenizer, records), max_new_tokens)
    scores = [score_reply(tokenizer.decode(c, skip_special_tokens=False), r) for c, r in zip(completions, records)]
    return sum(scores) / len(scores), scores


@torch.no_grad()
def letter_choices(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: list[dict], batch_size: int = 32
) -> list[str]:
    """For each multiple-choice record, the option letter with the largest logit at the first assistant token
    (the letters of ``record["choices"]["label"]`` only; lm-eval's way of reading a model's choice)."""
    device = model_device(model)
    prompts = chat_prompts(tokenizer, records)
    out = []
    for start in range(0, len(prompts), batch_size):
        enc = _left_padded(tokenizer, prompts[start : start + batch_size], device)
        last = torch.full((enc["input_ids"].shape[0],), enc["input_ids"].shape[1] - 1, device=device)
        logits = answer_logits(model, enc["input_ids"], enc["attention_mask"], last)  # [batch, vocab]
        for row, record in zip(logits, records[start : start + batch_size]):
            labels = record["choices"]["label"]
            ids = [tokenizer(label, add_special_tokens=False)["input_ids"][0] for label in labels]
            out.append(labels[int(row[ids].argmax())])
    return out


@torch.no_grad()
def option_choices(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: list[dict], batch_size: int = 32
) -> list[str]:
    """For each multiple-choice record, the label of the option whose text, as the whole assistant reply, has
    the largest log-likelihood (summed over its tokens; lm-eval's ``acc`` for cloze-style multiple choice).

    The question is asked without the lettered options, so the measure needs no letter binding, which a small
    chat model may lack (SmolLM2-135M-Instruct reads at chance by letter).
    """
    device = model_device(model)
    rows = []  # (prompt ids, option ids) for every record and option
    for r in records:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": r["question"]}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        rows += [(prompt_ids, tokenizer(text, add_special_tokens=False)["input_ids"]) for text in r["choices"]["text"]]
    scores = []
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        ids, mask = right_pad([p + o for p, o in part], tokenizer.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)  # [batch, pos]
        n_o = max(len(o) for _, o in part)
        # the positions that predict each option token (a short option repeats its last one; masked below)
        pos = torch.tensor([[len(p) - 1 + min(j, len(o) - 1) for j in range(n_o)] for p, o in part], device=device)
        target = torch.tensor([[o[min(j, len(o) - 1)] for j in range(n_o)] for _, o in part], device=device)
        valid = torch.tensor([[j < len(o) for j in range(n_o)] for _, o in part], device=device)
        logp = answer_logits(model, ids, mask, pos).float().log_softmax(-1)  # [batch, n_o, vocab]
        scores += (logp.gather(-1, target[..., None])[..., 0] * valid).sum(1).tolist()
    out, k = [], 0
    for r in records:
        n = len(r["choices"]["text"])
        out.append(r["choices"]["label"][max(range(n), key=lambda j: scores[k + j])])
        k += n
    return out


def prior_behaviour(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: list[PriorTask],
    n: int,
    seed: int,
    per_prompt: bool = False,
    circuits: dict[str, list[tuple[int, int]]] | None = None,
    base: PreTrainedModel | None = None,
) -> dict[str, dict]:
    """Top-1 accuracy, mean logit difference and mean log p(answer) per prior task on held-out prompts
    (:func:`task_accuracy`); with ``per_prompt``, each prompt's top-1 correctness and log p(answer) too; with
    ``circuits`` ({task: heads}) and the ``base`` model, the base model with those heads' outputs taken from
    ``model``'s own forward pass, all at once, on the same prompts (the circuit's joint total change)."""
    out = {}
    for t in tasks:
        batch = encode_examples(tokenizer, t.examples(n, seed), t.name)
        heads = (circuits or {}).get(t.name)
        out[t.name] = task_accuracy(model, batch, per_prompt=per_prompt, circuit=heads, base=base)
    return out


@torch.no_grad()
def forward_kl(
    base: PreTrainedModel,
    tuned: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    completions: list[list[int]],
    batch_size: int = 32,
    base_cache: dict[int, torch.Tensor] | None = None,
) -> list[float]:
    """Per-(prompt, completion) sum over completion tokens of KL(base || tuned) of the next-token distributions.

    ``completions`` were sampled from ``base``; prompts and completions are paired by index.  ``base_cache``: a
    dict kept between calls on the same prompts and completions, where the base model's log-probabilities are
    stored the first time (one forward of the base per checkpoint saved).
    """
    per_token = token_kl(base, tuned, tokenizer, prompts, completions, batch_size, base_cache)
    return [sum(row) for row in per_token]


@torch.no_grad()
def token_kl(
    base: PreTrainedModel,
    tuned: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    completions: list[list[int]],
    batch_size: int = 32,
    base_cache: dict[int, torch.Tensor] | None = None,
) -> list[list[float]]:
    """KL(base || tuned) of the next-token distribution that predicts each completion token, per (prompt,
    completion) and token: where in the text the two models depart (:func:`forward_kl` sums each row)."""
    device = model_device(tuned)
    out: list[list[float]] = []
    for start in range(0, len(prompts), batch_size):
        texts_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start : start + batch_size]]
        comps = completions[start : start + batch_size]
        ids, mask = right_pad([p + c for p, c in zip(texts_ids, comps)], tokenizer.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)  # [batch, pos]
        # the distributions that predicted completion tokens: positions len(p)-1 ... len(p)+len(c)-2
        n_c = max(max(len(c) for c in comps), 1)
        pos = torch.tensor(
            [[min(len(p) - 1 + j, len(p) + max(len(c), 1) - 2) for j in range(n_c)] for p, c in zip(texts_ids, comps)],
            device=device,
        )  # [batch, n_c]
        valid = torch.tensor([[j < len(c) for j in range(n_c)] for c in comps], device=device)
        if base_cache is not None and start in base_cache:
            logp0 = base_cache[start]
        else:
            logp0 = answer_logits(base, ids, mask, pos).float().log_softmax(-1)  # [batch, n_c, vocab]
            if base_cache is not None:
                base_cache[start] = logp0
        logp = answer_logits(tuned, ids, mask, pos).float().log_softmax(-1)
        kl_tok = (logp0.exp() * (logp0 - logp)).sum(-1) * valid  # [batch, n_c]
        out += [row[: len(c)] for row, c in zip(kl_tok.double().tolist(), comps)]
    return out


def divergence_view(
    base: PreTrainedModel,
    tuned: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    base_completions: list[list[int]],
    max_new_tokens: int,
    top: int = 5,
) -> list[dict]:
    """Where ``tuned`` departs from ``base`` in the text, per prompt: the per-token KL(base || tuned) along the
    base's sampled completion and along ``tuned``'s own greedy completion, each token decoded, and the ``top``
    tokens of largest KL over both. Each ``base.kl_sum`` is the forward KL of that (prompt, completion)."""
    own = generate(tuned, tokenizer, prompts, max_new_tokens)
    views: list[dict] = []
    for source, completions in (("base", base_completions), ("tuned", own)):
        per_token = token_kl(base, tuned, tokenizer, prompts, completions)
        for i, (completion, kl) in enumerate(zip(completions, per_token)):
            if source == "base":
                views.append({"prompt": prompts[i]})
            views[i][source] = {
                "tokens": [tokenizer.decode([t]) for t in completion],
                "kl": kl,
                "kl_sum": float(sum(kl)),
            }
    for view in views:
        ranked = [(kl, source, j) for source in ("base", "tuned") for j, kl in enumerate(view[source]["kl"])]
        view["top"] = [
            {"source": source, "position": j, "token": view[source]["tokens"][j], "kl": kl}
            for kl, source, j in sorted(ranked, reverse=True)[:top]
        ]
    return views


def cut_share(completions: list[list[int]], cap: int, tokenizer: PreTrainedTokenizerBase) -> float:
    """Share of sampled completions that reached the length cap without ending their turn."""
    stop = set(_stop_ids(tokenizer))
    return sum(len(c) >= cap and c[-1] not in stop for c in completions) / max(len(completions), 1)


@dataclass
class GeneralProbe:
    """Off-task behaviour: forward KL on general chat prompts (base completions sampled once) and accuracy on
    general-knowledge multiple choice scored by option log-likelihood (``targets/general.py``)."""

    tokenizer: object
    chat_prompts: list[str]
    chat_samples: list[list[int]]
    knowledge: list[dict]

    def scores(self, base: PreTrainedModel, model: PreTrainedModel) -> dict[str, float]:
        """{``kl_chat``: mean forward KL per chat prompt, ``knowledge_accuracy``: option log-likelihood accuracy}."""
        kl = forward_kl(base, model, self.tokenizer, self.chat_prompts, self.chat_samples)
        picked = option_choices(model, self.tokenizer, self.knowledge)
        correct = [p == r["answerKey"] for p, r in zip(picked, self.knowledge)]
        return {"kl_chat": sum(kl) / len(kl), "knowledge_accuracy": sum(correct) / len(correct)}


def general_probe(base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cfg: FinetuneConfig) -> GeneralProbe:
    """The general chat prompts with one base completion each (``cfg.chat_kl_tokens`` at most, seeded by
    ``cfg.seed``) and the general-knowledge questions, ready to measure any checkpoint against ``base``."""
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        for text in CHAT_PROMPTS
    ]
    samples = generate(base, tokenizer, prompts, cfg.chat_kl_tokens, sample=True, seed=cfg.seed)
    return GeneralProbe(tokenizer, prompts, samples, general_knowledge_records())


@torch.no_grad()
def task_accuracy(
    model: PreTrainedModel,
    batch: TaskBatch,
    batch_size: int = 128,
    per_prompt: bool = False,
    circuit: list[tuple[int, int]] | None = None,
    base: PreTrainedModel | None = None,
) -> dict:
    """Accuracy, mean logit difference (:func:`task_metric`) and mean log p(answer) on clean prompts.

    Single-answer tasks: top-1 accuracy (argmax over the vocabulary is the answer).  Set-scored tasks: the share
    of prompts whose probability mass on valid answers exceeds that on invalid ones (Hanna et al.'s probability
    difference above 0).  ``per_prompt``: also ``{"per_prompt": {"correct": [...], "logp_answer": [...]}}``.
    ``circuit`` (heads) with ``base``: also ``c0_joint_logp_answer``, the mean log p(answer) of ``base`` with those
    heads' outputs replaced by their values in ``model``'s forward pass (per prompt too with ``per_prompt``): the
    part of ``model``'s change that reaches the answer through the circuit (``measure/anatomy.py``'s
    ``joint_total/C0``).
    """
    from forgetlens.measure.anatomy import TunedPass, heads_from
    from forgetlens.models.heads import HeadLayout, capture_heads

    device = model_device(model)
    layout = HeadLayout.of(model) if circuit is not None else None
    reads: dict[str, list[torch.Tensor]] = {"correct": [], "logit_diff": [], "logp_answer": []}
    if circuit is not None:
        reads["c0_joint_logp_answer"] = []
    for start in range(0, len(batch), batch_size):
        part = batch.subset(range(start, min(start + batch_size, len(batch)))).to(device)
        if circuit is None:
            logits = answer_logits(model, part.clean_ids, part.attention_mask, part.answer_pos)
        else:
            assert base is not None and layout is not None, "the circuit's joint patch needs the base model"
            with capture_heads(model, layout) as z:
                logits = answer_logits(model, part.clean_ids, part.attention_mask, part.answer_pos)
            mask = torch.zeros(layout.n_layers, layout.n_heads, dtype=torch.bool)
            for layer, head in circuit:
                mask[layer, head] = True
            with heads_from(layout, base, mask, TunedPass(z=list(z), mlp_out=[])):
                patched = answer_logits(base, part.clean_ids, part.attention_mask, part.answer_pos)
            reads["c0_joint_logp_answer"].append(task_metric(patched, part, "logp_answer"))
        if part.option_ids is None:
            reads["correct"].append((logits.argmax(-1) == part.answer_ids).float())
        else:
            reads["correct"].append((task_metric(logits, part, "prob_diff") > 0).float())
        reads["logit_diff"].append(task_metric(logits, part, "logit_diff"))
        reads["logp_answer"].append(task_metric(logits, part, "logp_answer"))
    values = {name: torch.cat(parts).double() for name, parts in reads.items()}
    out: dict = {
        "accuracy": values["correct"].mean().item(),
        "logit_diff": values["logit_diff"].mean().item(),
        "logp_answer": values["logp_answer"].mean().item(),
    }
    if circuit is not None:
        out["c0_joint_logp_answer"] = values["c0_joint_logp_answer"].mean().item()
        out["c0_heads"] = len(circuit)
    if per_prompt:
        out["per_prompt"] = {
            name: [round(v, 6) for v in values[name].tolist()]
            for name in ("correct", "logp_answer", "c0_joint_logp_answer")
            if name in values
        }
    return out
