"""Build the embedded base model: tokenizer, Qwen2 architecture, pretraining, model card.

``forgetlens pretrain-base`` calls :func:`pretrain_base`.  Everything follows
from ``PretrainConfig.seed``; a snapshot of the training state is written every
``checkpoint_every`` steps so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from forgetlens.embedded_build import corpus
from forgetlens.embedded_build.config import PretrainConfig
from forgetlens.embedded_build.tokenizer import EOS, save_tokenizer, train_tokenizer
from forgetlens.errors import ForgetlensError
from forgetlens.measure.behaviour import task_accuracy
from forgetlens.models.forward import model_device
from forgetlens.models.heads import HeadLayout, capture_heads
from forgetlens.models.loading import checked_device, default_device
from forgetlens.targets import comparisons, science_qa
from forgetlens.tasks.base import check_vocabulary, encode_examples
from forgetlens.tasks.registry import EMBEDDED_TASKS, TASKS
from forgetlens.utils import atomic_write_text, first_line, right_pad, versions

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from forgetlens.progress import Logger


STATE_FILE = "pretrain_state.pt"


def _bar(steps: range, desc: str, initial: int, total: int):
    """A tqdm bar over pretraining steps with the loss beside it (quiet when FORGETLENS_QUIET is set)."""
    from tqdm.auto import tqdm

    quiet = bool(os.environ.get("FORGETLENS_QUIET"))
    return tqdm(steps, desc=desc, initial=initial, total=total, disable=quiet, dynamic_ncols=True, mininterval=1.0)


def build_model(cfg: PretrainConfig, vocab_size: int):
    """A freshly initialised Qwen2ForCausalLM of the configured size."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=cfg.max_len,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(cfg.seed)
    return Qwen2ForCausalLM(config)


class BucketedStream:
    """Batches of whole documents, each starting at position 0, grouped by length to limit padding.

    Documents are drawn ``pool`` batches at a time, sorted by token length and cut into batches, whose
    order is then shuffled.  Every document starts at position 0, as evaluation prompts do (packing
    documents after an EOS taught the model to rely on a preceding EOS, which prompts do not have).
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, docs, batch_size: int, max_len: int, rng: random.Random, pool: int = 8
    ):
        self.tokenizer, self.docs, self.batch_size, self.max_len = tokenizer, docs, batch_size, max_len
        self.rng, self.pool = rng, pool
        self.pending: list[list[list[int]]] = []

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (input_ids [batch, pos], labels [batch, pos] with -100 on padding)."""
        if not self.pending:
            seqs = [
                self.tokenizer(next(self.docs) + EOS, add_special_tokens=False)["input_ids"][: self.max_len]
                for _ in range(self.batch_size * self.pool)
            ]
            seqs.sort(key=len)
            self.pending = [seqs[i : i + self.batch_size] for i in range(0, len(seqs), self.batch_size)]
            self.rng.shuffle(self.pending)
        ids, mask = right_pad(self.pending.pop(), pad_id=0)  # [batch, pos]
        return ids, ids.masked_fill(mask == 0, -100)


def _lr(cfg: PretrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress_frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress_frac))


def evaluate_base(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n: int, seed: int
) -> dict[str, dict[str, float]]:
    """Held-out accuracy per prior task, and letter accuracy on multiple-choice questions by kind (``compare_mcq``:
    the default target's half of the comparison questions, never seen in pretraining)."""
    results = {}
    for name in EMBEDDED_TASKS:
        task = TASKS[name]()
        batch = encode_examples(tokenizer, task.examples(n, seed=seed), name)
        results[name] = task_accuracy(model, batch)
    results["capital_mcq"] = {"accuracy": mcq_letter_accuracy(model, tokenizer, corpus.SOURCES["capital_mcq"], n, seed)}
    for relation in science_qa.RELATIONS:
        results[f"science_mcq/{relation}"] = {
            "accuracy": mcq_letter_accuracy(
                model, tokenizer, lambda rng, r=relation: science_qa.science_mcq_document(rng, r), n, seed
            )
        }
    results["science_mcq"] = {
        "accuracy": sum(results[f"science_mcq/{r}"]["accuracy"] for r in science_qa.RELATIONS)
        / len(science_qa.RELATIONS)
    }
    results["compare_mcq"] = {"accuracy": mcq_letter_accuracy(model, tokenizer, comparisons.target_document, n, seed)}
    return results


@torch.no_grad()
def mcq_letter_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, make_document, n: int, seed: int
) -> float:
    """Share of ``n`` chat multiple-choice documents whose key letter has the highest logit of A-D."""
    rng = random.Random(f"mcq-eval:{seed}")
    letter_ids = [tokenizer(x, add_special_tokens=False)["input_ids"][0] for x in science_qa.LETTERS]
    marker = "<|im_start|>assistant\n"
    correct = 0
    for _ in range(n):
        prompt, key = make_document(rng).rsplit(marker, 1)
        ids = tokenizer(prompt + marker, add_special_tokens=False, return_tensors="pt")["input_ids"]
        logits = model(input_ids=ids.to(model_device(model))).logits[0, -1, letter_ids]
        correct += science_qa.LETTERS[int(logits.argmax())] == key[0]
    return correct / n


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_state(path: Path, device) -> dict:
    """The resume state written by :func:`_save_state`: tensors, numbers, strings and containers only
    (``weights_only=True`` refuses any other pickled object, so a planted file cannot run code)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # UnpicklingError for a foreign object, RuntimeError/EOFError for a damaged file
        raise ForgetlensError(
            f"{path}: not a resume state forgetlens wrote ({first_line(exc)}); delete it to start the build again"
        ) from None
    if not isinstance(state, dict) or "stage" not in state:
        raise ForgetlensError(f"{path}: not a resume state forgetlens wrote; delete it to start the build again")
    return state


def head_contribution_l1(
    model: PreTrainedModel, layout: HeadLayout, head_inputs: list[torch.Tensor], mask: torch.Tensor
) -> torch.Tensor:
    """Mean over ``mask``ed tokens of the sum over layers and heads of each head's residual contribution's L2 norm.

    head_inputs: every layer's output-projection input [batch, pos, head * d_head] (``capture_heads``);
    mask: [batch, pos], 1 on the tokens to average over.
    """
    total = 0.0
    for proj, z in zip(layout.projections(model), head_inputs):
        w_o = proj.weight.view(-1, layout.n_heads, layout.d_head)  # [d_model, head, d_head]
        contribution = torch.einsum("bphd,mhd->bphm", layout.split(z), w_o)  # [batch, pos, head, d_model]
        total = total + contribution.norm(dim=-1).sum(-1)  # [batch, pos]
    return (total * mask).sum() / mask.sum()


def next_token_loss(
    model: PreTrainedModel,
    ids: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    head_sparsity: float = 0.0,
) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions (ids, labels: [batch, pos]; -100 marks padding),
    with ``label_smoothing`` of the target spread uniformly over the vocabulary, plus ``head_sparsity`` times
    :func:`head_contribution_l1` over the real tokens."""
    mask = (labels != -100).long()
    layout = HeadLayout.of(model) if head_sparsity else None
    heads_context: Any = capture_heads(model, layout) if layout else contextlib.nullcontext([])
    with heads_context as head_inputs:
        if label_smoothing == 0.0:
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        else:
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # [batch, pos-1, vocab]
            loss = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(),
                labels[:, 1:].flatten(),
                ignore_index=-100,
                label_smoothing=label_smoothing,
            )
    if layout:
        loss = loss + head_sparsity * head_contribution_l1(model, layout, head_inputs, mask)
    return loss


def _step(
    model: PreTrainedModel,
    opt,
    ids: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    head_sparsity: float = 0.0,
) -> float:
    """One optimizer step on a batch built on the CPU ([batch, pos] each) -> the loss."""
    device = model_device(model)
    loss = next_token_loss(model, ids.to(device), labels.to(device), label_smoothing, head_sparsity)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


def _restore(state: dict, model: PreTrainedModel, opt, data_rng: random.Random) -> None:
    """Model, optimizer and data-stream position from a training-state snapshot."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    data_rng.setstate(state["data_rng"])


def _train_main(
    cfg: PretrainConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    state_path: Path,
    state: dict | None,
    log: Logger,
) -> float:
    """Stages 1-2: the opening curriculum, then the mixed corpus, one optimizer and LR schedule -> seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    data_rng = random.Random(f"corpus:{cfg.seed}")
    start, elapsed_before = 0, 0.0
    if state is not None:
        _restore(state, model, opt, data_rng)
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location may have moved it
        start, elapsed_before = state["step"], state["elapsed"]
        log(f"resuming pretraining at step {start}")
    opening = BucketedStream(
        tokenizer, corpus.documents(cfg.curriculum_recipe, data_rng), cfg.batch_size, cfg.max_len, data_rng
    )
    main = BucketedStream(tokenizer, corpus.documents(cfg.recipe, data_rng), cfg.batch_size, cfg.max_len, data_rng)
    if state is not None:
        opening.pending, main.pending = state["pending"]
    model.train()
    t0 = time.perf_counter()
    bar = _bar(range(start, cfg.steps), "pretrain", start, cfg.steps)
    for step in bar:
        ids, labels = (opening if step < cfg.curriculum_steps else main).next_batch()  # [batch, pos]
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step)
        bar.set_postfix(loss=f"{_step(model, opt, ids, labels, head_sparsity=cfg.head_sparsity):.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            _save_state(
                state_path,
                {
                    "stage": "main",
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "done_seconds": {},
                    "data_rng": data_rng.getstate(),
                    "torch_rng": torch.get_rng_state(),
                    "step": step + 1,
                    "pending": (opening.pending, main.pending),
                    "elapsed": elapsed_before + time.perf_counter() - t0,
                },
            )
    return elapsed_before + time.perf_counter() - t0


def _train_substages(
    cfg: PretrainConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    state_path: Path,
    state: dict | None,
    stage: str,
    substages: list,
    stream_seed: str,
    done_seconds: dict,
    log: Logger,
) -> tuple[float, float]:
    """Stages 3-4: ``substages`` in turn, one fresh optimizer at ``format_lr`` after linear warm-up, documents from
    one stream seeded ``stream_seed`` -> (seconds, last loss).  ``done_seconds`` (earlier stages' times) is
    stored in each snapshot."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.format_lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    data_rng = random.Random(stream_seed)
    start, elapsed_before = 0, 0.0
    if state is not None:
        _restore(state, model, opt, data_rng)
        start, elapsed_before = state["step"], state["elapsed"]
        log(f"resuming the {stage} stage at step {start}")
    streams = [
        BucketedStream(tokenizer, corpus.documents(sub.recipe, data_rng), cfg.batch_size, cfg.max_len, data_rng)
        for sub in substages
    ]
    ends = [sum(sub.steps for sub in substages[: i + 1]) for i in range(len(substages))]
    if state is not None:
        for stream, pending in zip(streams, state["pending"]):
            stream.pending = pending
    model.train()
    t0 = time.perf_counter()
    loss = float("nan")
    total = ends[-1] if ends else 0
    bar = _bar(range(start, total), f"pretrain ({stage} stage)", start, total)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = cfg.format_lr * min(1.0, (step + 1) / cfg.warmup)
        sub = next(i for i, end in enumerate(ends) if step < end)
        loss = _step(
            model,
            opt,
            *streams[sub].next_batch(),
            label_smoothing=substages[sub].label_smoothing,
            head_sparsity=substages[sub].head_sparsity,
        )
        bar.set_postfix(loss=f"{loss:.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
            _save_state(
                state_path,
                {
                    "stage": stage,
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "data_rng": data_rng.getstate(),
                    "step": step + 1,
                    "pending": [st.pending for st in streams],
                    "done_seconds": done_seconds,
                    "elapsed": elapsed_before + time.perf_counter() - t0,
                },
            )
    return elapsed_before + time.perf_counter() - t0, loss


BUILD_STAGES = ("main", "format", "compare")
"""The build's stages in order: 1-2 (curriculum, then the mixed corpus), 3 (answer format), 4 (comparisons)."""


def pretrain_base(
    cfg: PretrainConfig,
    out_dir: Path,
    resume: bool = False,
    start_from: Path | None = None,
    start_after: str = "main",
    log: Logger = print,
) -> dict:
    """Train tokenizer and model into ``out_dir``; return the model card dict.

    ``start_from``: a directory holding this configuration's model at the end of stage ``start_after``
    (``main``: stages 1-2, for example a build before the format stage existed; ``format``: stages 1-3, for
    example the shipped model before stage 4 existed); the stages up to it are loaded, not rerun.  Each later
    stage starts from a fresh optimizer and its own document stream, so the result is the same either way.
    """
    if start_after not in BUILD_STAGES[:-1]:
        raise ForgetlensError(f"--start-after must be one of {', '.join(BUILD_STAGES[:-1])}, got {start_after!r}")
    torch.set_num_threads(cfg.threads)
    stage_recipes = [stage.recipe for stage in cfg.format_stages] + (
        [cfg.compare_stage.recipe] if cfg.compare_stage else []
    )
    for recipe in [cfg.recipe, cfg.curriculum_recipe] + stage_recipes:
        corpus.validate_recipe(recipe)
    for substage in cfg.format_stages + ([cfg.compare_stage] if cfg.compare_stage else []):
        if not 0.0 <= substage.label_smoothing < 1.0:
            raise ForgetlensError(
                f"pretraining: FormatStage.label_smoothing must be in [0, 1), got {substage.label_smoothing}"
            )
        if substage.head_sparsity < 0.0:
            raise ForgetlensError(f"pretraining: FormatStage.head_sparsity must be >= 0, got {substage.head_sparsity}")
    if cfg.head_sparsity < 0.0:
        raise ForgetlensError(f"pretraining: PretrainConfig.head_sparsity must be >= 0, got {cfg.head_sparsity}")
    device = torch.device(checked_device(cfg.device, "PretrainConfig.device") if cfg.device else default_device())
    out_dir.mkdir(parents=True, exist_ok=True)
    tok_rng = random.Random(f"tokenizer:{cfg.seed}")
    stream = corpus.documents(cfg.recipe, tok_rng)
    tok = train_tokenizer((next(stream) for _ in range(cfg.tokenizer_docs)), cfg.vocab_size)
    tokenizer = save_tokenizer(tok, out_dir, cfg.max_len)
    for cls in TASKS.values():
        check_vocabulary(tokenizer, cls())

    model = build_model(cfg, len(tokenizer)).to(device)
    log(f"pretraining on {device}")
    state_path = out_dir / STATE_FILE
    state = _load_state(state_path, device) if resume and state_path.exists() else None
    seconds: dict[str, float] = {}  # stage -> training seconds
    if state is not None:
        first = BUILD_STAGES.index(state["stage"])
        seconds = dict(state.get("done_seconds", {}))
    elif start_from is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(Path(start_from) / "model.safetensors")), strict=False)
        model.tie_weights()
        card_path = Path(start_from) / "card.json"
        old = json.loads(card_path.read_text())["stage_seconds"] if card_path.exists() else {}
        first = BUILD_STAGES.index(start_after) + 1
        seconds = {stage: old.get(stage, float("nan")) for stage in BUILD_STAGES[:first]}
        log(f"stages up to {start_after!r} loaded from {start_from}")
    else:
        first = 0
    last_loss = float("nan")
    for stage in BUILD_STAGES[first:]:
        resumed = state if state is not None and state["stage"] == stage else None
        if stage == "main":
            seconds["main"] = _train_main(cfg, model, tokenizer, state_path, resumed, log)
        elif stage == "format" or cfg.compare_stage is not None:
            substages, stream_seed = (
                (cfg.format_stages, f"format:{cfg.seed}")
                if stage == "format"
                else ([cfg.compare_stage], f"compare-substage:{cfg.seed}")
            )
            seconds[stage], last_loss = _train_substages(
                cfg, model, tokenizer, state_path, resumed, stage, substages, stream_seed, dict(seconds), log
            )
    model.eval()
    accuracy = evaluate_base(model, tokenizer, cfg.eval_examples, seed=10_000 + cfg.seed)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    card = {
        "name": "forgetlens embedded base model",
        "architecture": "Qwen2ForCausalLM",
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "pretrain_config": dataclasses.asdict(cfg),
        "train_device": str(device),
        "train_seconds": round(sum(seconds.values()), 1),
        "stage_seconds": {stage: round(t, 1) for stage, t in seconds.items()},
        "final_loss": round(last_loss, 4),
        "held_out_accuracy": accuracy,
        "versions": versions(),
    }
    atomic_write_text(out_dir / "card.json", json.dumps(card, indent=2))
    if state_path.exists():
        state_path.unlink()
    return card
