"""Score a GRPO batch with one forward pass per distinct prompt instead of one per completion.

GRPO samples ``G`` completions of each prompt, and TRL scores them by running the model over ``G`` copies of
prompt + completion. The prompt's keys and values are the same in every copy, so this module runs each distinct
prompt once (wherever its copies sit in the batch), keeps its key/value cache (with gradients), repeats the cache
along the batch, and runs only the completion tokens on top. The result is the same function of the weights: the
gradient reaching the shared prompt is the sum of the ``G`` copies' gradients, exactly what the copies would send.
What changes is the cost: with prompts of ``P`` tokens and completions of ``C``, the backbone sees ``P + G * C``
tokens per group instead of ``G * (P + C)``.

Positions follow TRL's forward (no ``position_ids``, so ``0 .. P + C - 1`` on every row, left padding included);
the padding is masked out of attention in both. ``tests/algorithms/test_shared_prompt.py`` checks log-probabilities,
entropies and gradients against TRL's own scoring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


MAX_LOGITS = 2**28
"""Largest rows x completion tokens x vocabulary this module materialises as float32 logits (1 GiB); bigger
batches are left to TRL's chunked head."""


LOGIT_SCALINGS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
"""Config fields that soft-cap or scale a model's logits (TRL's fused head applies them; this module does not, so
a model with any of them set is scored by TRL)."""


def prompt_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first row of each distinct prompt ``[groups]``, in order of first appearance; each row's group ``[rows]``).

    Rows with equal ids and mask are one group wherever they sit: TRL's sampler puts a prompt's ``G`` completions
    next to each other, but its ``_prepare_inputs`` shuffles the rows of a generation batch before the loss pass
    sees them (measured on SmolLM2, 8 prompts x 8: 53 runs of equal consecutive rows, 8 distinct prompts)."""
    rows = prompt_ids.size(0)
    key = torch.cat([prompt_ids, prompt_mask], dim=1)  # [rows, 2P]
    _, inverse = torch.unique(key, dim=0, return_inverse=True)  # [rows], groups numbered in sorted order
    index = torch.arange(rows, device=prompt_ids.device)
    first = torch.full((int(inverse.max()) + 1,), rows, dtype=torch.long, device=prompt_ids.device)
    first = first.scatter_reduce(0, inverse, index, reduce="amin")  # [groups]: each group's first row
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=prompt_ids.device)
    return first[order], rank[inverse]


def logits_fit(rows: int, completion_tokens: int, vocab: int) -> bool:
    """Whether the completion logits of a batch fit under :data:`MAX_LOGITS`."""
    return rows * completion_tokens * vocab <= MAX_LOGITS


def completion_logps_shared_prompt(
    causal_lm: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
    compute_entropy: bool = False,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probabilities ``[rows, C]`` of ``completion_ids`` under ``causal_lm`` (logits / temperature),
    and their entropies when asked, with each distinct prompt run once. Masked completion tokens score 0.
    ``entropy_grad=False`` computes the entropies outside autograd (they are then only read, never differentiated:
    TRL logs them and may mask tokens by them; only an entropy bonus in the loss needs their gradient).

    ``prompt_ids``/``prompt_mask``: ``[rows, P]``, left-padded; ``completion_ids``/``completion_mask``:
    ``[rows, C]``. ``causal_lm`` is a plain transformers causal LM (its backbone under ``base_model_prefix``)."""
    backbone = getattr(causal_lm, causal_lm.base_model_prefix)
    first_rows, group_of_row = prompt_groups(prompt_ids, prompt_mask)
    prompt_len, completion_len = prompt_ids.size(1), completion_ids.size(1)

    prompt_out = backbone(input_ids=prompt_ids[first_rows], attention_mask=prompt_mask[first_rows], use_cache=True)
    cache = prompt_out.past_key_values
    cache.batch_select_indices(group_of_row)  # [groups, ...] -> [rows, ...], still attached to the graph
    positions = torch.arange(prompt_len, prompt_len + completion_len, device=completion_ids.device)
    completion_out = backbone(
        input_ids=completion_ids,
        attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),  # [rows, P + C]
        position_ids=positions.unsqueeze(0).expand(completion_ids.size(0), -1),  # [rows, C]
        past_key_values=cache,
        use_cache=True,
    )
    # The token at completion position t is predicted from position t - 1: the prompt's last for t = 0.
    hidden = torch.cat(
        [prompt_out.last_hidden_state[group_of_row, -1:], completion_out.last_hidden_state[:, :-1]], dim=1
    )  # [rows, C, d_model]
    logits = causal_lm.get_output_embeddings()(hidden).float() / temperature  # [rows, C, vocab]
    log_probs = F.log_softmax(logits, dim=-1)
    keep = completion_mask.bool()
    token_logps = log_probs.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1).masked_fill(~keep, 0.0)
    if not compute_entropy:
        return token_logps, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):  # logged only, unless a loss term
        entropy = -(log_probs.exp() * log_probs).sum(-1).masked_fill(~keep, 0.0)  # [rows, C]
    return token_logps, entropy


def full_copies_logps(
    fused_lm: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The reference: TRL's scoring, as ``GRPOTrainer._get_per_token_logps_and_entropies`` runs it, every row's
    prompt + completion through the model. ``fused_lm`` carries TRL's fused LM head (``add_fused_lm_head``, with
    the temperature and the outputs wanted). Returns (log-probabilities, entropies or None), ``[rows, C]`` each."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [rows, P + C]
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    keep = completion_ids.size(1)
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, :-keep] = -100  # only the completion tokens are scored
    out = fused_lm(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    entropy = out.entropy[:, -keep:] if out.entropy is not None else None
    return out.log_probs[:, -keep:], entropy


def has_active_dropout(model: torch.nn.Module) -> bool:
    """Whether a forward pass of ``model`` in its current mode drops anything (a dropout module or the
    attention dropout of the config)."""
    if not model.training:
        return False
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
        return True
    return bool(getattr(model.config.get_text_config(), "attention_dropout", 0.0))


def sharing_is_exact(causal_lm: Any) -> bool:
    """Whether :func:`completion_logps_shared_prompt` computes exactly what TRL's scoring of full copies does for
    this (unwrapped) model in its current mode: no gradient checkpointing (it turns the cache off), no active
    dropout (each copy would draw its own masks), no logit soft-capping or scaling, full attention in every layer
    (sliding-window layers keep a cropped cache), and a backbone under ``base_model_prefix``."""
    checkpointing = getattr(causal_lm, "is_activation_checkpointing", None)  # transformers 5's name
    if checkpointing is None:
        checkpointing = getattr(causal_lm, "is_gradient_checkpointing", False)
    if checkpointing or has_active_dropout(causal_lm):
        return False
    text_config = causal_lm.config.get_text_config()
    if any(getattr(text_config, name, None) not in (None, 1.0) for name in LOGIT_SCALINGS):
        return False
    if any(kind != "full_attention" for kind in getattr(text_config, "layer_types", None) or ()):
        return False
    return hasattr(causal_lm, getattr(causal_lm, "base_model_prefix", "") or "-")


def with_shared_prompt_scoring(trainer_cls: type) -> type:
    """A subclass of TRL's ``GRPOTrainer`` that scores completions with :func:`completion_logps_shared_prompt`
    whenever that is exact and safe, and with TRL's own scoring otherwise. Safe means: one process (a second
    forward call would bypass DDP/DeepSpeed's hooks); no gradient checkpointing (it turns the cache off); no
    active dropout (the copies would each draw their own masks); full attention in every layer; text only; no
    MoE auxiliary loss; no logit soft-capping or scaling; and logits that fit :data:`MAX_LOGITS`. Rows are
    scored in TRL's ``batch_size`` chunks. ``shared_prompt_calls`` and ``trl_scoring_calls`` count which path
    each call took."""

    class SharedPromptScoring(trainer_cls):
        shared_prompt_calls = 0
        trl_scoring_calls = 0

        def _get_per_token_logps_and_entropies(
            self,
            model: PreTrainedModel,
            input_ids,
            attention_mask,
            logits_to_keep,
            batch_size=None,
            compute_entropy=False,
            compute_aux_loss=False,
            **multimodal,
        ):
            causal_lm = self._plain_causal_lm(model)
            rows, completion_len = input_ids.size(0), logits_to_keep
            chunk = min(batch_size or rows, rows)  # TRL's memory bound for its no-grad passes
            if (
                causal_lm is None
                or compute_aux_loss
                or any(value is not None for value in multimodal.values())
                or not logits_fit(chunk, completion_len, causal_lm.config.get_text_config().vocab_size)
            ):
                self.trl_scoring_calls += 1
                return super()._get_per_token_logps_and_entropies(
                    model,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    batch_size=batch_size,
                    compute_entropy=compute_entropy,
                    compute_aux_loss=compute_aux_loss,
                    **multimodal,
                )
            self.shared_prompt_calls += 1
            split = input_ids.size(1) - completion_len
            logps, entropies = [], []
            for start in range(0, rows, chunk):
                part = slice(start, start + chunk)
                with self.accelerator.autocast():
                    part_logps, part_entropy = completion_logps_shared_prompt(
                        causal_lm,
                        input_ids[part, :split],
                        attention_mask[part, :split],
                        input_ids[part, split:],
                        attention_mask[part, split:],
                        temperature=self.temperature,
                        compute_entropy=compute_entropy,
                        entropy_grad=getattr(self.args, "entropy_coef", 0.0) != 0.0,
                    )
                logps.append(part_logps)
                entropies.append(part_entropy)
            entropy = torch.cat(entropies) if compute_entropy else None
            return torch.cat(logps), entropy, None

        def _plain_causal_lm(self, model: PreTrainedModel):
            """The model to score with, or None when shared-prompt scoring would not be exact or safe."""
            if self.accelerator.num_processes != 1:
                return None
            causal_lm = self.accelerator.unwrap_model(model)
            if hasattr(causal_lm, "get_base_model"):  # PEFT: LoRA layers live inside the base model's modules
                causal_lm = causal_lm.get_base_model()
            return causal_lm if sharing_is_exact(causal_lm) else None

    SharedPromptScoring.__name__ = f"SharedPromptScoring{trainer_cls.__name__}"
    return SharedPromptScoring
