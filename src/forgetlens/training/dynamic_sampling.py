"""Dynamic sampling (DAPO, Yu et al. 2025, arXiv 2503.14476): sample more groups than a step trains on, train on
those whose rewards vary.

A GRPO group whose completions all earn the same reward has zero advantage everywhere: under Dr.GRPO it adds
nothing to the gradient, only to the batch.  As a run learns, more groups are all right, and a step of such groups
trains on little (the SmolLM2 frontier: half its groups, docs/results/smollm2-135m/frontier.md).  Here each
generation round samples ``oversample`` times the step's prompts, scores every group as TRL does, and keeps
``prompts_per_step`` groups, those with reward variance first, in the order they were drawn, topped up with
groups without variance when too few vary.  The loss pass then sees the usual batch.  Two shares are logged per
step: ``frac_reward_zero_std`` over every sampled group (TRL's own), ``frac_trained_zero_std`` over the groups
kept.  Unlike DAPO, a step never samples again when too few groups vary: its cost stays fixed.
"""

from __future__ import annotations

import torch


def varying_groups(advantages: torch.Tensor, group_size: int) -> torch.Tensor:
    """[groups] bool: whether each group's rewards vary (a non-zero advantage); ``advantages``: [rows],
    ``group_size`` consecutive rows per group."""
    return (advantages.view(-1, group_size) != 0).any(dim=1)


def kept_groups(advantages: torch.Tensor, group_size: int, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` groups to train on, ascending: groups whose rewards vary first (in the order drawn),
    then groups without (:func:`varying_groups`)."""
    varies = varying_groups(advantages, group_size)
    order = torch.cat([varies.nonzero().flatten(), (~varies).nonzero().flatten()])
    return order[:keep].sort().values


def with_dynamic_sampling(trainer_cls: type, groups_per_step: int) -> type:
    """A subclass of TRL's ``GRPOTrainer`` whose generation rounds keep ``groups_per_step`` of the groups sampled
    (:func:`kept_groups`); its generation batch must hold more groups than that, on one process."""

    class DynamicSampling(trainer_cls):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            if not self.model.training:
                return out
            rows = len(out["advantages"])
            group = self.num_generations
            keep = kept_groups(out["advantages"], group, groups_per_step)  # [groups kept]
            taken = (keep[:, None] * group + torch.arange(group, device=keep.device)).flatten()  # [rows kept]
            varies = varying_groups(out["advantages"], group)
            self._metrics["train"]["frac_trained_zero_std"].append((~varies[keep]).float().mean().item())
            kept = {
                k: v[taken] if isinstance(v, torch.Tensor) and v.dim() > 0 and len(v) == rows else v
                for k, v in out.items()
            }
            kept["num_items_in_batch"] = kept["completion_mask"].sum()  # what the kept rows' tokens number
            return kept

    DynamicSampling.__name__ = f"DynamicSampling{trainer_cls.__name__}"
    return DynamicSampling
