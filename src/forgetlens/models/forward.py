"""Forward passes that return what the measurements need: logits at the answer position."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


def _unembeds_directly(model: PreTrainedModel) -> bool:
    """True when logits are exactly ``get_output_embeddings()(base_model(...).last_hidden_state)``."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel) or model.base_model is model or model.get_output_embeddings() is None:
        return False
    cfg = model.config
    return not any(getattr(cfg, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS)


def model_device(model: PreTrainedModel) -> torch.device:
    """The device of ``model``'s parameters (where its inputs must go)."""
    return next(model.parameters()).device


def run_body(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    """A forward pass for its hooks' sake: the unembedding is skipped where :func:`_unembeds_directly` allows
    (on a tiny model it costs as much as the rest: [batch, pos, d_model] x [d_model, vocab])."""
    body = model.base_model if _unembeds_directly(model) else model
    body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)


def answer_logits(
    model: PreTrainedModel,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor,
    answer_pos: torch.Tensor,
    inputs_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits at each row's answer position: [batch, pos] -> [batch, vocab] ([batch, k, vocab] when
    ``answer_pos`` is [batch, k]: several positions per row).

    Only the answer positions go through the unembedding (for a model whose logits are a plain linear
    read-out of the final hidden state); other models compute every position's logits and pick.
    """
    rows = torch.arange(attention_mask.shape[0], device=attention_mask.device)
    if answer_pos.dim() == 2:
        rows = rows[:, None]
    kwargs = dict(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
    if _unembeds_directly(model):
        hidden = model.base_model(**kwargs).last_hidden_state  # [batch, pos, d_model]
        return model.get_output_embeddings()(hidden[rows, answer_pos])
    return model(**kwargs).logits[rows, answer_pos]
