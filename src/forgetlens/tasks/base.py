"""The prior-capability task protocol and its tokenised form.

A prior task yields :class:`TaskExample` records: a clean prompt, a corrupted
prompt of the same token length, the answer the clean prompt calls for and a
distractor (the answer the corrupted prompt calls for).  :func:`encode_examples`
turns them into tensors for one tokenizer and checks every assumption the
circuit code relies on, with errors that name the task and the offending text.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forgetlens.errors import ForgetlensError
from forgetlens.utils import right_pad

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedTokenizerBase


if TYPE_CHECKING:  # torch is imported where it is used: listing tasks needs none of it
    import torch


@dataclass(frozen=True)
class TaskExample:
    """One clean/corrupted pair of a prior-capability task."""

    clean: str
    """Prompt whose next token should be ``answer``."""
    corrupted: str
    """Prompt of equal token length whose next token should be ``distractor``."""
    answer: str
    """Correct continuation of ``clean`` (one token, usually with a leading space)."""
    distractor: str
    """Continuation the corrupted prompt calls for; the metric compares against it."""
    valid: tuple[str, ...] = ()
    """For tasks scored over answer sets (``greater_than_year``): every continuation that is right; empty for
    single-answer tasks.  The metric then compares ``valid`` against ``invalid`` instead of answer against
    distractor."""
    invalid: tuple[str, ...] = ()
    """Every continuation that is wrong (with ``valid``); continuations in neither set do not count."""


@dataclass
class TaskBatch:
    """A prior task rendered for one tokenizer (right-padded)."""

    task: str
    clean_ids: torch.Tensor  # [batch, pos]
    corrupted_ids: torch.Tensor  # [batch, pos]
    attention_mask: torch.Tensor  # [batch, pos], 1 on real tokens
    answer_pos: torch.Tensor  # [batch], index of the last prompt token
    answer_ids: torch.Tensor  # [batch]
    distractor_ids: torch.Tensor  # [batch]
    option_ids: torch.Tensor | None = None  # [option]: token ids of a set-scored task's continuations
    option_sign: torch.Tensor | None = None  # [batch, option]: +1 valid, -1 invalid, 0 neither

    def __len__(self) -> int:
        return self.clean_ids.shape[0]

    def subset(self, index: torch.Tensor | list[int]) -> TaskBatch:
        """Rows ``index`` of the batch (used for splits and bootstrap resamples)."""
        import torch

        index = torch.as_tensor(index, dtype=torch.long)
        width = int(self.answer_pos[index].max()) + 1 if len(index) else 0
        return TaskBatch(
            task=self.task,
            clean_ids=self.clean_ids[index, :width],
            corrupted_ids=self.corrupted_ids[index, :width],
            attention_mask=self.attention_mask[index, :width],
            answer_pos=self.answer_pos[index],
            answer_ids=self.answer_ids[index],
            distractor_ids=self.distractor_ids[index],
            option_ids=self.option_ids,
            option_sign=None if self.option_sign is None else self.option_sign[index],
        )

    def to(self, device: torch.device | str) -> TaskBatch:
        def move(t):
            return None if t is None else t.to(device)

        return TaskBatch(
            self.task,
            clean_ids=self.clean_ids.to(device),
            corrupted_ids=self.corrupted_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            answer_pos=self.answer_pos.to(device),
            answer_ids=self.answer_ids.to(device),
            distractor_ids=self.distractor_ids.to(device),
            option_ids=move(self.option_ids),
            option_sign=move(self.option_sign),
        )


class PriorTask(ABC):
    """A capability the base model had before fine-tuning, testable by clean/corrupted pairs."""

    name: str
    description: str

    @abstractmethod
    def sample(self, rng: random.Random) -> TaskExample:
        """Draw one example."""

    @abstractmethod
    def document(self, rng: random.Random) -> str:
        """One pretraining document that exercises the capability (used by the embedded corpus)."""

    def examples(self, n: int, seed: int) -> list[TaskExample]:
        """``n`` examples, reproducible from ``seed``."""
        if n <= 0:
            raise ForgetlensError(f"task {self.name}: number of examples must be positive, got {n}")
        rng = random.Random(f"{self.name}:{seed}")
        return [self.sample(rng) for _ in range(n)]

    def vocabulary(self) -> list[str]:
        """Words (with their leading space) that must be single tokens for this task to render."""
        return []


def single_token_id(tokenizer: PreTrainedTokenizerBase, text: str, task: str, field: str) -> int:
    """The id of ``text`` if it is exactly one token, else a ForgetlensError naming it."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ForgetlensError(
            f"task {task}: {field} {text!r} is {len(ids)} tokens for this tokenizer; "
            "answers and distractors must be single tokens"
        )
    return ids[0]


def check_vocabulary(tokenizer: PreTrainedTokenizerBase, task: PriorTask) -> None:
    """Fail early, naming the word, if any task word is not a single token."""
    for word in task.vocabulary():
        single_token_id(tokenizer, word, task.name, "word")


def leading_special_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids a tokenizer puts before every text by itself: Gemma's ``<bos>``, which its models need to see (a
    Gemma prompt without it is answered as noise); none for the Qwen, Llama and SmolLM2 tokenizers."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    start = full[: len(full) - len(plain)]
    return list(start) if full[len(start) :] == plain else []


def encode_examples(tokenizer: PreTrainedTokenizerBase, examples: list[TaskExample], task: str) -> TaskBatch:
    """Tokenise ``examples`` (after the tokenizer's own leading special tokens, :func:`leading_special_ids`); check
    single-token answers and equal clean/corrupted lengths."""
    import torch

    if not examples:
        raise ForgetlensError(f"task {task}: no examples to encode")
    start = leading_special_ids(tokenizer)
    clean, corrupted, answers, distractors = [], [], [], []
    for i, ex in enumerate(examples):
        c = tokenizer(ex.clean, add_special_tokens=False)["input_ids"]
        x = tokenizer(ex.corrupted, add_special_tokens=False)["input_ids"]
        if len(c) != len(x):
            raise ForgetlensError(
                f"task {task}, example {i}: clean prompt is {len(c)} tokens but corrupted is {len(x)}; "
                f"pairs must have equal length (clean={ex.clean!r}, corrupted={ex.corrupted!r})"
            )
        a = single_token_id(tokenizer, ex.answer, task, "answer")
        d = single_token_id(tokenizer, ex.distractor, task, "distractor")
        joined = tokenizer(ex.clean + ex.answer, add_special_tokens=False)["input_ids"]
        if joined != c + [a]:
            raise ForgetlensError(
                f"task {task}, example {i}: the answer {ex.answer!r} merges with the end of the prompt "
                f"{ex.clean!r} under this tokenizer; the answer must be a separate next token"
            )
        if a == d:
            raise ForgetlensError(f"task {task}, example {i}: answer and distractor are the same token {ex.answer!r}")
        clean.append(start + c)
        corrupted.append(start + x)
        answers.append(a)
        distractors.append(d)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    clean_ids, mask = right_pad(clean, pad)  # [batch, pos]
    corrupted_ids, _ = right_pad(corrupted, pad)  # same lengths, so the same mask
    option_ids, option_sign = _answer_sets(tokenizer, examples, task)
    return TaskBatch(
        task=task,
        clean_ids=clean_ids,
        corrupted_ids=corrupted_ids,
        attention_mask=mask,
        answer_pos=torch.tensor([len(c) - 1 for c in clean]),
        answer_ids=torch.tensor(answers),
        distractor_ids=torch.tensor(distractors),
        option_ids=option_ids,
        option_sign=option_sign,
    )


def _answer_sets(
    tokenizer: PreTrainedTokenizerBase, examples: list[TaskExample], task: str
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(option ids [option], sign [batch, option]) of set-scored examples; (None, None) for single-answer tasks."""
    import torch

    if not any(ex.valid for ex in examples):
        return None, None
    options = sorted({w for ex in examples for w in ex.valid + ex.invalid})
    ids = [single_token_id(tokenizer, w, task, "option") for w in options]
    column = {w: i for i, w in enumerate(options)}
    sign = torch.zeros(len(examples), len(options))
    for row, ex in enumerate(examples):
        if not ex.valid or not ex.invalid:
            raise ForgetlensError(f"task {task}, example {row}: a set-scored example needs valid and invalid answers")
        for w in ex.valid:
            sign[row, column[w]] = 1.0
        for w in ex.invalid:
            sign[row, column[w]] = -1.0
    return torch.tensor(ids), sign


METRICS = ("logit_diff", "prob_diff", "logp_answer", "prob_answer", "top1_margin")
"""Task metrics at the answer position (:func:`task_metric`): two that compare against the corrupted prompt's
answer (``logit_diff``, ``prob_diff``) and three that see the whole vocabulary (``logp_answer``,
``prob_answer``, ``top1_margin``), which register probability moving to tokens the distractor never was."""
WHOLE_VOCABULARY_METRICS = ("logp_answer", "prob_answer", "top1_margin")


def task_metric(logits: torch.Tensor, batch: TaskBatch, kind: str) -> torch.Tensor:
    """Per-prompt metric from answer-position logits [batch, vocab] -> [batch].

    Single-answer tasks: ``logit_diff`` = logit(answer) - logit(distractor); ``prob_diff``: the same on softmax
    probabilities; ``logp_answer`` = log p(answer); ``prob_answer`` = p(answer); ``top1_margin`` =
    logit(answer) - the largest logit of any other token (> 0 exactly when the answer is the top-1 token).
    Set-scored tasks (``batch.option_ids``): ``logit_diff`` = mean logit of the valid answers - mean logit of the
    invalid ones; ``prob_diff`` = probability mass on the valid answers - mass on the invalid ones (Hanna et al.
    2023's probability difference); ``logp_answer`` / ``prob_answer`` = log / probability mass on the valid
    answers; ``top1_margin`` = the largest valid logit - the largest logit of any token not valid.
    """
    import torch

    if kind not in METRICS:
        raise ForgetlensError(f"unknown metric {kind!r}; expected one of {', '.join(METRICS)}")
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # half-precision models: measure in float32
    rows = torch.arange(logits.shape[0], device=logits.device)
    if batch.option_ids is not None:
        assert batch.option_sign is not None  # set together with option_ids
        sign = batch.option_sign.to(logits.device, logits.dtype)  # [batch, option]
        options = batch.option_ids.to(logits.device)
        valid, invalid = sign.clamp(min=0), (-sign).clamp(min=0)  # [batch, option]
        if kind == "logit_diff":
            picked = logits[:, options]
            return (picked * valid).sum(-1) / valid.sum(-1) - (picked * invalid).sum(-1) / invalid.sum(-1)
        if kind == "prob_diff":
            return (logits.softmax(-1)[:, options] * sign).sum(-1)
        logp = logits.log_softmax(-1)[:, options].masked_fill(valid == 0, float("-inf"))  # [batch, option]
        if kind == "logp_answer":
            return logp.logsumexp(-1)
        if kind == "prob_answer":
            return logp.logsumexp(-1).exp()
        best_valid = logits[:, options].masked_fill(valid == 0, float("-inf")).max(-1).values
        is_valid = torch.zeros_like(logits, dtype=torch.bool)
        is_valid[:, options] = valid > 0
        return best_valid - logits.masked_fill(is_valid, float("-inf")).max(-1).values
    answer = logits[rows, batch.answer_ids]
    if kind == "logit_diff":
        return answer - logits[rows, batch.distractor_ids]
    if kind == "prob_diff":
        probs = logits.softmax(-1)
        return probs[rows, batch.answer_ids] - probs[rows, batch.distractor_ids]
    if kind in ("logp_answer", "prob_answer"):
        logp = logits.log_softmax(-1)[rows, batch.answer_ids]
        return logp if kind == "logp_answer" else logp.exp()
    others = logits.clone()
    others[rows, batch.answer_ids] = float("-inf")
    return answer - others.max(-1).values
