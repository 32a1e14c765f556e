"""Target-task records -> the training and evaluation sets both methods share.

Both methods see the same prompts in the same order: :func:`training_schedule`
draws ``steps * prompts_per_step`` training records once, from the seed, and
the trainers read them sequentially (no trainer-side shuffling).
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING

from forgetlens.config.methods import finetune_method
from forgetlens.config.options import FinetuneConfig
from forgetlens.targets import comparisons
from forgetlens.targets.science_data import load_target_data, split_records, synthetic_science_records
from forgetlens.targets.science_qa import gold_completion, user_text

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedTokenizerBase


def target_splits(cfg: FinetuneConfig) -> tuple[list[dict], list[dict]]:
    """(train, eval) records; eval questions never appear in train."""
    if cfg.data is None and cfg.synthetic_target == "compare":
        records = comparisons.target_records()
    elif cfg.data is None and cfg.synthetic_target == "compare-short":
        records = comparisons.short_answer_records()
    elif cfg.data is None:
        records = synthetic_science_records(cfg.seed, cfg.variants_per_question)
    else:
        records = load_target_data(cfg.data, cfg.seed)
    if cfg.max_records:
        records = random.Random(f"cap:{cfg.seed}").sample(records, min(cfg.max_records, len(records)))
    source = str(cfg.data) if cfg.data is not None else f"built-in target {cfg.synthetic_target!r}"
    return split_records(records, cfg.eval_fraction, cfg.seed, source)


def training_schedule(train: list[dict], cfg: FinetuneConfig) -> list[dict]:
    """The exact sequence of training records, ``steps * prompts_per_step`` long (times ``rl.oversample`` for an
    RL method sampling dynamically), shuffled epoch by epoch."""
    rng = random.Random(f"schedule:{cfg.seed}")
    per_step = cfg.prompts_per_step * (cfg.rl.oversample if finetune_method(cfg.method).trainer == "rl" else 1)
    need, out = cfg.steps * per_step, list[dict]()
    while len(out) < need:
        epoch = list(train)
        rng.shuffle(epoch)
        out.extend(epoch)
    return out[:need]


def prompt_length_problems(
    records: list[dict], tokenizer: PreTrainedTokenizerBase, max_positions: int | None, new_tokens: int
) -> list[str]:
    """One line per record whose chat prompt plus ``new_tokens`` generated tokens would not fit the model's
    ``max_positions``, naming where the record came from (file and line, or the built-in target)."""
    if not max_positions:
        return []
    problems = []
    for i, r in enumerate(records):
        messages = [{"role": "user", "content": user_text(r)}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        n = len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        if n + new_tokens > max_positions:
            where = r.get("_where", f"built-in target question {i}")
            problems.append(
                f"{where}: the prompt is {n} tokens, plus {new_tokens} to generate; the model covers {max_positions} "
                f"positions (shorten the record or drop it)"
            )
    return problems


def conversational_rows(records: list[dict], with_completion: bool) -> list[dict]:
    """TRL conversational rows: ``prompt`` (and ``completion``), plus the record as JSON for the reward."""
    rows = []
    for r in records:
        row = {"prompt": [{"role": "user", "content": user_text(r)}], "record": json.dumps(r)}
        if with_completion:
            row["completion"] = [{"role": "assistant", "content": gold_completion(r)}]
        rows.append(row)
    return rows
