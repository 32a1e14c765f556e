"""Behaviour measurements checked against slow, obvious references: forward KL, letter choices, answer scoring."""

from __future__ import annotations

import pytest
import torch
from helpers import make_tiny

from forgetlens.measure.behaviour import chat_prompts, cut_share, forward_kl, generate, letter_choices, option_choices
from forgetlens.targets import comparisons
from forgetlens.targets.general import CHAT_PROMPTS, general_knowledge_records
from forgetlens.targets.rewards import score_reply, stated_values


def _prompts(tokenizer, n=6):
    return chat_prompts(tokenizer, comparisons.target_records()[:n])


@torch.no_grad()
def _reference_kl(base, tuned, tokenizer, prompt: str, completion: list[int]) -> float:
    """Sum over completion tokens of KL(base || tuned) at each prefix, one unpadded forward per prefix."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    total = 0.0
    for t in range(len(completion)):
        prefix = torch.tensor([ids + completion[:t]])
        logp0 = base(input_ids=prefix).logits[0, -1].float().log_softmax(-1)
        logp = tuned(input_ids=prefix).logits[0, -1].float().log_softmax(-1)
        total += float((logp0.exp() * (logp0 - logp)).sum())
    return total


def test_forward_kl_matches_a_prefix_by_prefix_reference(tokenizer):
    base, tuned = make_tiny("qwen2", len(tokenizer), seed=0), make_tiny("qwen2", len(tokenizer), seed=1)
    prompts = _prompts(tokenizer)
    samples = generate(base, tokenizer, prompts, 7, sample=True, seed=3)
    assert len({len(s) for s in samples}) >= 1
    fast = forward_kl(base, tuned, tokenizer, prompts, samples, batch_size=4)  # batches mix lengths: padding
    slow = [_reference_kl(base, tuned, tokenizer, p, c) for p, c in zip(prompts, samples)]
    assert torch.allclose(torch.tensor(fast), torch.tensor(slow), rtol=1e-4, atol=1e-4)
    assert min(slow) > 0


def test_forward_kl_of_a_model_to_itself_is_zero(tokenizer):
    base = make_tiny("qwen2", len(tokenizer), seed=0)
    prompts = _prompts(tokenizer, 4)
    samples = generate(base, tokenizer, prompts, 5, sample=True, seed=0)
    assert max(abs(v) for v in forward_kl(base, base, tokenizer, prompts, samples)) < 1e-5


def test_chain_rule_and_log_ratio_estimators_agree_on_long_completions(tokenizer):
    """Both estimate the same sequence KL from the same samples; their means must agree within sampling error
    (the chain-rule sum is the conditional expectation of the log ratio, so their difference has mean 0)."""
    base, tuned = make_tiny("qwen2", len(tokenizer), seed=0), make_tiny("qwen2", len(tokenizer), seed=2)
    prompts = [p for p in _prompts(tokenizer, 4) for _ in range(16)]
    samples = generate(base, tokenizer, prompts, 24, sample=True, seed=5)
    chain = torch.tensor(forward_kl(base, tuned, tokenizer, prompts, samples))
    ratios = []
    with torch.no_grad():
        for p, c in zip(prompts, samples):
            ids = torch.tensor([tokenizer(p, add_special_tokens=False)["input_ids"] + c])
            n = len(c)
            lp0 = base(input_ids=ids).logits[0, -n - 1 : -1].float().log_softmax(-1)
            lp = tuned(input_ids=ids).logits[0, -n - 1 : -1].float().log_softmax(-1)
            tok = torch.tensor(c)[:, None]
            ratios.append(float((lp0.gather(1, tok) - lp.gather(1, tok)).sum()))
    diff = torch.tensor(ratios) - chain
    assert abs(diff.mean()) < 3 * diff.std() / len(diff) ** 0.5 + 1e-6


def test_letter_choices_match_one_prompt_at_a_time(tokenizer):
    model = make_tiny("qwen2", len(tokenizer), seed=4)
    records = comparisons.target_records()[:5]
    batched = letter_choices(model, tokenizer, records, batch_size=3)
    one_by_one = []
    for r in records:
        ids = torch.tensor([tokenizer(chat_prompts(tokenizer, [r])[0], add_special_tokens=False)["input_ids"]])
        logits = model(input_ids=ids).logits[0, -1]
        letters = [tokenizer(x, add_special_tokens=False)["input_ids"][0] for x in "ABCD"]
        one_by_one.append("ABCD"[int(logits[letters].argmax())])
    assert batched == one_by_one


def test_cut_share_counts_completions_that_hit_the_cap(tokenizer):
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert cut_share([[5, 6, 7], [5, end], [5, 6, end]], 3, tokenizer) == 1 / 3


def test_one_value_answers():
    record = comparisons.short_answer_records()[0]
    value = record["answer"]
    assert stated_values(f"The answer is {value}.") == stated_values(value)
    assert score_reply(f"The {record['question'].split('Which ')[1].split(' is')[0]} is {value}.", record) == 1.0
    assert score_reply(value, record) == 1.0
    other = next(v for v in "0123456789" if v not in value)
    assert score_reply(f"{other} {value.split()[1]}", record) == 0.0
    assert score_reply(f"{value} or {other}", record) == 0.0  # hedging names two values
    assert score_reply(record["question"], record) == 0.0  # repeating the question names all four


def test_general_probe_material():
    records = general_knowledge_records()
    assert len(records) >= 100 and all(r["answerKey"] in "ABCD" for r in records)
    assert len(set(CHAT_PROMPTS)) == len(CHAT_PROMPTS) >= 24


def test_option_choices_match_one_option_at_a_time(tokenizer):
    model = make_tiny("qwen2", len(tokenizer), seed=5)
    records = general_knowledge_records()[:3]
    batched = option_choices(model, tokenizer, records, batch_size=5)  # batches split records: padding
    expected = []
    for r in records:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": r["question"]}], tokenize=False, add_generation_prompt=True
        )
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        best = None
        for label, text in zip(r["choices"]["label"], r["choices"]["text"]):
            o = tokenizer(text, add_special_tokens=False)["input_ids"]
            logp = model(input_ids=torch.tensor([p + o])).logits[0].log_softmax(-1)
            score = sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(o))
            if best is None or score > best[0]:
                best = (score, label)
        expected.append(best[1])
    assert batched == expected


@torch.no_grad()
def _reference_token_kl(base, tuned, tokenizer, prompt: str, completion: list[int]) -> list[float]:
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for t in range(len(completion)):
        prefix = torch.tensor([ids + completion[:t]])
        logp0 = base(input_ids=prefix).logits[0, -1].float().log_softmax(-1)
        logp = tuned(input_ids=prefix).logits[0, -1].float().log_softmax(-1)
        out.append(float((logp0.exp() * (logp0 - logp)).sum()))
    return out


def test_per_token_divergence_matches_a_reference_and_sums_to_the_forward_kl(tokenizer):
    """Where two models depart in the text: each token's KL against a prefix-by-prefix reference, over the base's
    completions and the tuned model's own; the base completions' sums are the forward KL forgetlens reports; the
    top tokens are the largest; a model against itself departs nowhere."""
    from forgetlens.measure.behaviour import divergence_view, token_kl

    base, tuned = make_tiny("qwen2", len(tokenizer), seed=0), make_tiny("qwen2", len(tokenizer), seed=1)
    prompts = _prompts(tokenizer, 4)
    samples = generate(base, tokenizer, prompts, 6, sample=True, seed=5)
    per_token = token_kl(base, tuned, tokenizer, prompts, samples, batch_size=3)
    for row, prompt, completion in zip(per_token, prompts, samples):
        assert len(row) == len(completion)
        assert torch.allclose(
            torch.tensor(row), torch.tensor(_reference_token_kl(base, tuned, tokenizer, prompt, completion)), atol=1e-4
        )
    views = divergence_view(base, tuned, tokenizer, prompts, samples, max_new_tokens=6, top=3)
    kl = forward_kl(base, tuned, tokenizer, prompts, samples)
    for view, total in zip(views, kl):
        assert view["base"]["kl_sum"] == pytest.approx(total, rel=1e-9, abs=1e-12)
        own = view["tuned"]
        assert own["kl_sum"] == pytest.approx(sum(own["kl"]))
        everything = sorted(view["base"]["kl"] + own["kl"], reverse=True)
        assert [t["kl"] for t in view["top"]] == everything[:3]
    same = divergence_view(base, base, tokenizer, prompts, samples, max_new_tokens=6)
    assert all(v == 0 for view in same for source in ("base", "tuned") for v in view[source]["kl"])


def test_a_runs_last_checkpoint_keeps_its_divergence_and_it_sums_to_its_kl(tmp_path):
    """``forgetlens finetune`` keeps ``divergence.json`` for the last checkpoint: each target prompt's summed
    per-token KL over the base's sample is that prompt's term of the row's forward KL."""
    import json

    from forgetlens.config.options import FinetuneConfig
    from forgetlens.models.loading import load_model
    from forgetlens.pipeline.evaluate import DIVERGENCE_PROMPTS
    from forgetlens.pipeline.finetune import finetune
    from forgetlens.training.checkpoints import load_checkpoint
    from forgetlens.training.data import target_splits

    cfg = FinetuneConfig(method="sft", steps=2, checkpoint_every=2, prompts_per_step=2, prior_eval_examples=8)
    cfg.kl_samples, cfg.kl_prompts = 1, 6
    run = tmp_path / "run"
    rows = finetune(cfg, run, log=lambda *a: None)
    view = json.loads((run / "divergence.json").read_text())
    assert view["step"] == 2 and len(view["target"]) == DIVERGENCE_PROMPTS
    base, tuned = load_model("embedded"), load_checkpoint(run / "checkpoints" / "checkpoint-2", "embedded")
    _, evaluation = target_splits(cfg)
    prompts = chat_prompts(base.tokenizer, evaluation[: cfg.kl_prompts])
    samples = generate(base.model, base.tokenizer, prompts, cfg.max_new_tokens, sample=True, seed=cfg.seed)
    kl = forward_kl(base.model, tuned, base.tokenizer, prompts, samples)  # the run's KL samples, drawn again
    assert sum(kl) / len(kl) == pytest.approx(rows[-1]["kl_forward"], rel=1e-6)
    assert [p["prompt"] for p in view["target"]] == prompts[:DIVERGENCE_PROMPTS]
    for kept, total in zip(view["target"], kl):
        assert kept["base"]["kl_sum"] == pytest.approx(total, rel=1e-6, abs=1e-9)
    assert any(total > 0 for total in kl)
