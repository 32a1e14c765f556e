"""Sample a GRPO group's completions with each distinct prompt's prefill computed once.

TRL's regular generation path hands ``model.generate`` every prompt ``G`` times (its sampler repeats each prompt
for its group), so the prompt's key/value cache is computed ``G`` times. On a CPU that prefill is most of a
step's generation time (SmolLM2-135M, 8 prompts of 65 tokens x 8 completions: 15.5 s of 15.4 s for the
``G``-fold prefill against 1.7 s for the distinct prompts, ``BENCHMARKS.md``). Here each run of identical
consecutive prompts is prefilled once, its cache repeated along the batch, and the completions decoded token by
token from the repeated cache: the same distribution of completions (ancestral sampling at ``temperature`` from
the same next-token distributions), drawn from torch's global generator, so a seeded run is deterministic.

Positions follow ``generate`` (each row counts from its first real token: ``cumsum(mask) - 1``). Only plain
sampling is taken over (temperature, no top-p/top-k/min-p, no repetition penalty); anything else, and vLLM,
several processes or multimodal inputs, stays with TRL (``with_shared_prefill_generation``).
``tests/algorithms/test_rollouts.py`` checks greedy decoding against ``generate`` token for token and the sampled
tokens' probabilities against a full forward pass.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from forgetlens.training.shared_prompt import prompt_groups

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists as one left-padded batch -> (ids [batch, width], mask [batch, width], 1 on real tokens)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids, mask


def common_prefix(rows: list[list[int]]) -> int:
    """Length of the longest token prefix every row shares (a chat template's system turn)."""
    if not rows:
        return 0
    first, n = rows[0], min(len(r) for r in rows)
    for i in range(n):
        if any(r[i] != first[i] for r in rows):
            return i
    return n


def full_attention(model: PreTrainedModel) -> bool:
    """Whether every layer of ``model`` attends to every earlier position (no sliding-window layers)."""
    layer_types = getattr(model.config.get_text_config(), "layer_types", None) or ()
    return all(kind == "full_attention" for kind in layer_types)


@torch.no_grad()
def sample_completions(
    model: PreTrainedModel,
    prompt_ids: list[list[int]],
    max_new_tokens: int,
    stop_ids: list[int],
    pad_id: int,
    temperature: float = 1.0,
    greedy: bool = False,
) -> list[list[int]]:
    """One completion per row of ``prompt_ids`` (identical rows share one prefill, and, in models without
    sliding-window layers, the prefix all of them start with is computed once), each cut after its first token of
    ``stop_ids`` (kept), at most ``max_new_tokens`` long.

    ``greedy``: the argmax token at every step instead of a sample at ``temperature``."""
    device = next(model.parameters()).device
    full_ids, full_mask = left_pad(prompt_ids, pad_id)
    firsts, group_of_row = prompt_groups(full_ids, full_mask)  # [groups], [rows]
    distinct = [prompt_ids[i] for i in firsts.tolist()]
    shared = min(common_prefix(distinct), min(len(p) for p in distinct) - 1) if len(distinct) > 1 else 0
    if not full_attention(model):  # a sliding-window layer's cache is cropped between the two calls
        shared = 0
    cache = None
    prefix_mask = torch.ones(len(distinct), shared, dtype=torch.long, device=device)  # [groups, shared]
    if shared > 0:  # the common prefix once, its cache repeated for every distinct prompt
        prefix = torch.tensor([distinct[0][:shared]], device=device)
        cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(len(distinct))
    ids, mask = left_pad([p[shared:] for p in distinct], pad_id)  # [groups, P - shared]: padding after the prefix
    ids, mask = ids.to(device), torch.cat([prefix_mask, mask.to(device)], dim=1)  # mask: [groups, P]
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions[:, shared:],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    cache = out.past_key_values
    if len(distinct) != len(group_of_row):
        cache.batch_select_indices(group_of_row)  # [groups, ...] -> [rows, ...]
    logits = out.logits[group_of_row, -1]  # [rows, vocab]
    mask, position = mask[group_of_row], positions[group_of_row, -1]  # [rows, P], [rows]
    stop = torch.tensor(stop_ids, device=device)
    done = torch.zeros(len(prompt_ids), dtype=torch.bool, device=device)
    tokens = []
    for t in range(max_new_tokens):
        if greedy:
            chosen = logits.argmax(-1)
        else:
            probs = torch.softmax(logits.float() / temperature, dim=-1)  # [rows, vocab]
            chosen = torch.multinomial(probs, 1).squeeze(1)
        chosen = torch.where(done, torch.full_like(chosen, pad_id), chosen)  # [rows]
        tokens.append(chosen)
        done = done | torch.isin(chosen, stop)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # [rows, P + t + 1]
        position = position + 1
        out = model(
            input_ids=chosen[:, None],
            attention_mask=mask,
            position_ids=position[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        logits = out.logits[:, -1]
    completions = []
    stop_set = set(stop_ids)
    for row in torch.stack(tokens, dim=1).tolist():  # [rows, new tokens]
        cut = next((i + 1 for i, tok in enumerate(row) if tok in stop_set), len(row))
        completions.append(row[:cut])
    return completions


def plain_sampling(generation_config: Any) -> bool:
    """Whether ``generation_config`` asks for nothing but sampling at a temperature (what
    :func:`sample_completions` does): no top-p, top-k, min-p, repetition penalty or beam search."""
    cfg = generation_config
    return (
        getattr(cfg, "do_sample", True)
        and getattr(cfg, "top_p", 1.0) in (None, 1.0)
        and getattr(cfg, "top_k", 0) in (None, 0)
        and getattr(cfg, "min_p", None) in (None, 0.0)
        and getattr(cfg, "repetition_penalty", 1.0) in (None, 1.0)
        and getattr(cfg, "num_beams", 1) in (None, 1)
        and not getattr(cfg, "suppress_tokens", None)
        and not getattr(cfg, "bad_words_ids", None)
    )


def with_shared_prefill_generation(trainer_cls: type) -> type:
    """A subclass of TRL's ``GRPOTrainer`` that samples rollouts with :func:`sample_completions` (one prefill per
    distinct prompt) whenever TRL would call ``model.generate`` on one process with plain sampling and text only;
    TRL's own path otherwise. ``shared_prefill_calls`` and ``trl_generation_calls`` count which path each call
    took, ``shared_prefill_seconds`` the time its own sampling took."""

    from trl.models.utils import unwrap_model_for_generation

    class SharedPrefillGeneration(trainer_cls):
        shared_prefill_calls = 0
        trl_generation_calls = 0
        shared_prefill_seconds = 0.0

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            if (
                self.use_vllm
                or getattr(self, "use_transformers_continuous_batching", False)
                or images is not None
                or multimodal_fields
                or self.accelerator.num_processes != 1
                or not plain_sampling(self.generation_config)
            ):
                self.trl_generation_calls += 1
                return super()._generate_single_turn(
                    prompt_ids, images, multimodal_fields, num_generations, has_tool_images
                )
            self.shared_prefill_calls += 1
            start = time.perf_counter()
            with (  # as TRL's own path: unwrapped, gradient checkpointing off (it would drop the cache)
                unwrap_model_for_generation(
                    self.model_wrapped,
                    self.accelerator,
                    gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                    gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
                ) as model,
                self.accelerator.autocast(),
            ):
                completions = sample_completions(
                    model,
                    [list(p) for p in prompt_ids],
                    self.max_completion_length,
                    list(self.eos_token_ids),
                    self._tokenizer.pad_token_id,
                    temperature=self.temperature,
                )
            self.shared_prefill_seconds += time.perf_counter() - start
            return completions, None

    SharedPrefillGeneration.__name__ = f"SharedPrefillGeneration{trainer_cls.__name__}"
    return SharedPrefillGeneration
