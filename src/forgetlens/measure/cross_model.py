"""Cross-model activation patching: one head of a tuned model placed inside the base model.

Two ways to take "the tuned model's head h" on prompt x:

* ``total`` (CMAP as in Prakash et al. 2024 and arXiv 2605.28860): h's output in the tuned model's own
  forward pass, z_theta(h; x), replaces the base output at the input of the base output projection.
  It carries every change upstream of h too, so damage to earlier heads shows up as "vulnerability"
  of later ones, and changes to h's own slice of the output projection are invisible.
* ``local`` (forgetlens's default): the tuned block's input norm and attention read the *base* model's
  residual stream at h's layer, and h's write to the residual stream, W_O^theta[:, h] z_theta(h), replaces
  the base write W_O^0[:, h] z_0(h).  Only parameters that compute h (its query/key/value/output slices and
  the layer's input norm) matter, so a perturbation of other heads leaves it exactly unchanged.

Both return per-prompt metric changes m_0(x | h <- tuned) - m_0(x), [batch, layer, head].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from forgetlens.circuits.patching import head_outputs, patch_each_head, run_metric
from forgetlens.models.heads import HeadLayout
from forgetlens.progress import open_task
from forgetlens.tasks.base import TaskBatch

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


CMAP_MODES = ("local", "total")


@contextmanager
def registered_hooks(registrations: Iterable[Callable[[], Any]]) -> Iterator[None]:
    """Call each ``register()`` in ``registrations`` on entry and remove every handle on exit, whatever happens."""
    handles = []
    try:
        for register in registrations:
            handles.append(register())
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def base_pass(base: PreTrainedModel, layout: HeadLayout, part: TaskBatch) -> tuple[torch.Tensor, list, list]:
    """The base model's forward on ``part`` with what head-local CMAP needs from it.

    Returns (z_0 [layer, batch, pos, head, d_head], the residual stream entering each layer's input norm,
    each layer's attention call (args, kwargs)).  Nothing in it depends on the tuned model, so a caller that
    compares many tuned models with one base (the training monitor) computes it once.
    """
    residuals: list[torch.Tensor] = []
    calls: list[tuple[tuple, dict]] = []

    def keep_residual(module, args):
        residuals.append(args[0])

    def keep_call(module, args, kwargs):
        calls.append((args, dict(kwargs)))

    base_attn = layout.attentions(base)
    regs = [lambda n=norm: n.register_forward_pre_hook(keep_residual) for norm, _ in base_attn]
    regs += [lambda a=attn: a.register_forward_pre_hook(keep_call, with_kwargs=True) for _, attn in base_attn]
    with registered_hooks(regs):
        z0 = head_outputs(base, layout, part)
    return z0, residuals, calls


@torch.no_grad()
def tuned_heads_on_base(tuned: PreTrainedModel, layout: HeadLayout, residuals: list, calls: list) -> torch.Tensor:
    """z_theta: the tuned block's norm + attention applied to the base residual stream of :func:`base_pass`
    -> [layer, batch, pos, head, d_head]."""
    z1 = []
    for layer, (norm, attn) in enumerate(layout.attentions(tuned)):
        args, kwargs = calls[layer]
        kwargs = dict(kwargs)
        hidden = norm(residuals[layer])
        if args:
            args = (hidden,) + tuple(args[1:])
        else:
            kwargs["hidden_states"] = hidden
        captured: list[torch.Tensor] = []
        proj = layout.projections(tuned)[layer]
        with registered_hooks([lambda: proj.register_forward_pre_hook(lambda m, a: captured.append(a[0]))]):  # noqa: B023
            attn(*args, **kwargs)
        z1.append(layout.split(captured[0]))
    return torch.stack(z1)


def local_head_outputs(
    base: PreTrainedModel, tuned: PreTrainedModel, layout: HeadLayout, part: TaskBatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head outputs of base and tuned attention on the base residual stream.

    Returns (z_0, z_theta), each [layer, batch, pos, head, d_head]: z_theta at layer l is what the tuned
    block's norm + attention compute from the base model's residual stream entering layer l.
    """
    z0, residuals, calls = base_pass(base, layout, part)
    return z0, tuned_heads_on_base(tuned, layout, residuals, calls)


def head_writes(proj: torch.nn.Module, z: torch.Tensor, layout: HeadLayout) -> torch.Tensor:
    """Each head's write to the residual stream through ``proj`` (bias excluded) -> [head, batch, pos, d_model].

    z: [batch, pos, head, d_head].  A plain ``nn.Linear`` is read as W_O [d_model, head, d_head]; any other
    module (a LoRA-wrapped projection) is called once on copies of z in which copy h keeps only head h.
    """
    if type(proj) is torch.nn.Linear:
        w_o = proj.weight.view(proj.out_features, layout.n_heads, layout.d_head)  # [d_model, head, d_head]
        return torch.einsum("bphd,mhd->hbpm", z.to(w_o.dtype), w_o)
    eye = torch.eye(layout.n_heads, dtype=z.dtype, device=z.device)  # [head, head]
    only = z.unsqueeze(0) * eye[:, None, None, :, None]  # [head, batch, pos, head, d_head]
    bias = proj(torch.zeros_like(only[:1, :, :1]).flatten(3))  # [1, batch, 1, d_model]
    return proj(only.flatten(3)) - bias


@torch.no_grad()
def local_cmap(
    base: PreTrainedModel,
    tuned: PreTrainedModel,
    layout: HeadLayout,
    part: TaskBatch,
    metric: str,
    outputs: tuple[torch.Tensor, torch.Tensor] | None = None,
    heads: torch.Tensor | None = None,
    baseline: torch.Tensor | None = None,
) -> torch.Tensor:
    """Head-local CMAP effects on ``part``'s clean prompts -> [batch, layer, head] (see module docstring).

    ``outputs``: :func:`local_head_outputs` of the same models and prompts, when the caller already has them.
    ``heads``: [layer, head] bool, patch only these (one forward pass each; others stay 0); None = every head.
    ``baseline``: m_0 on ``part`` [batch], when the caller has it.
    """
    z0, z1 = outputs if outputs is not None else local_head_outputs(base, tuned, layout, part)
    if baseline is None:
        baseline = run_metric(base, part, metric)
    effects = torch.zeros(len(part), layout.n_layers, layout.n_heads, dtype=baseline.dtype)
    base_proj, tuned_proj = layout.projections(base), layout.projections(tuned)
    n = layout.n_total if heads is None else int(heads.sum())
    with open_task("head-local CMAP, exact", n, "heads", announce=False) as shown:
        for layer in range(layout.n_layers):
            chosen = range(layout.n_heads) if heads is None else heads[layer].nonzero().flatten().tolist()
            if not chosen:
                continue
            delta = head_writes(tuned_proj[layer], z1[layer], layout) - head_writes(base_proj[layer], z0[layer], layout)
            for head in chosen:
                add = delta[head]  # [batch, pos, d_model]
                with registered_hooks([lambda: base_proj[layer].register_forward_hook(lambda m, a, out: out + add)]):  # noqa: B023
                    effects[:, layer, head] = (run_metric(base, part, metric) - baseline).cpu()
                shown.advance()
    return effects


def cross_model_patching(
    base: PreTrainedModel,
    tuned: PreTrainedModel,
    layout: HeadLayout,
    part: TaskBatch,
    metric: str,
    mode: str = "local",
    tuned_outputs: torch.Tensor | None = None,
) -> torch.Tensor:
    """CMAP effects of every head -> [batch, layer, head]; ``tuned_outputs`` reuses z_theta for ``total``."""
    if mode == "local":
        return local_cmap(base, tuned, layout, part, metric)
    if tuned_outputs is None:
        tuned_outputs = head_outputs(tuned, layout, part)
    return patch_each_head(base, layout, part, tuned_outputs, metric)
