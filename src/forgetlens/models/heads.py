"""Where per-head attention outputs live, per architecture, and hooks on them.

Every supported architecture concatenates its heads' outputs (each already
weighted by its attention pattern, before the output projection) into one
tensor that enters the output projection: ``self_attn.o_proj`` for
Qwen2/Llama/Mistral-style models (grouped-query attention shares keys and
values, not outputs, so there are still ``n_heads`` blocks) and ``attn.c_proj``
for GPT-2.  Its input has shape [batch, pos, n_heads * d_head] with head ``h``
in columns ``h*d_head:(h+1)*d_head``.  All hooks here are forward pre-hooks on
that projection, removed in a ``finally`` block whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from forgetlens.errors import ForgetlensError

# model_type -> (path to the list of blocks, then from a block: output projection, attention module, the norm
# that feeds the attention module)
_LAYOUTS: dict[str, tuple[str, str, str, str]] = {
    "qwen2": ("model.layers", "self_attn.o_proj", "self_attn", "input_layernorm"),
    "qwen3": ("model.layers", "self_attn.o_proj", "self_attn", "input_layernorm"),
    "llama": ("model.layers", "self_attn.o_proj", "self_attn", "input_layernorm"),
    "mistral": ("model.layers", "self_attn.o_proj", "self_attn", "input_layernorm"),
    "gpt2": ("transformer.h", "attn.c_proj", "attn", "ln_1"),
    # Gemma 3 normalises the attention output before the residual add (post_attention_layernorm).  Every patch
    # and every gradient here acts on the output projection's input or output, before that norm, so the model
    # applies the norm itself and first-order estimates stay first-order (tests/algorithms/test_gemma.py).
    "gemma3_text": ("model.layers", "self_attn.o_proj", "self_attn", "input_layernorm"),
}


def supported_model_types() -> list[str]:
    """``config.model_type`` values whose per-head outputs forgetlens knows how to read."""
    return sorted(_LAYOUTS)


HeadFn = Callable[[int, torch.Tensor], torch.Tensor | None]
"""(layer, z [batch, pos, head, d_head]) -> replacement z, or None to leave it."""


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The underlying transformers model of a PEFT wrapper (the model itself otherwise)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


@dataclass(frozen=True)
class HeadLayout:
    """Shape of a model's attention heads and where their outputs enter the residual stream."""

    architecture: str
    n_layers: int
    n_heads: int
    d_head: int

    @property
    def n_total(self) -> int:
        return self.n_layers * self.n_heads

    @classmethod
    def of(cls, model: torch.nn.Module) -> HeadLayout:
        """The layout of ``model``; a ForgetlensError naming the architecture if it is unsupported."""
        config = unwrap(model).config
        model_type = getattr(config, "model_type", type(model).__name__)
        if model_type not in _LAYOUTS:
            raise ForgetlensError(
                f"unsupported architecture {model_type!r} ({type(unwrap(model)).__name__}): forgetlens knows where "
                f"per-head outputs live only for {', '.join(sorted(_LAYOUTS))}"
            )
        if model_type == "gpt2":
            n_heads, width = config.n_head, config.n_embd
            d_head = width // n_heads
        else:
            n_heads = config.num_attention_heads
            d_head = getattr(config, "head_dim", None) or config.hidden_size // n_heads
        return cls(model_type, config.num_hidden_layers if model_type != "gpt2" else config.n_layer, n_heads, d_head)

    def projections(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """The output projection of every layer (its input holds the per-head outputs)."""
        return self._modules(model, 1)

    def attentions(self, model: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
        """(input norm, attention module) of every layer: the part of a block that computes its heads."""
        return list(zip(self._modules(model, 3), self._modules(model, 2)))

    def blocks(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """The model's transformer blocks, first to last."""
        return list(_get(unwrap(model), _LAYOUTS[self.architecture][0]))

    def _modules(self, model: torch.nn.Module, which: int) -> list[torch.nn.Module]:
        return [_get(block, _LAYOUTS[self.architecture][which]) for block in self.blocks(model)]

    def split(self, z: torch.Tensor) -> torch.Tensor:
        """[batch, pos, n_heads * d_head] -> [batch, pos, n_heads, d_head] (a view)."""
        return z.view(*z.shape[:-1], self.n_heads, self.d_head)

    def check_compatible(self, other: HeadLayout, what: str) -> None:
        if (self.architecture, self.n_layers, self.n_heads, self.d_head) != (
            other.architecture,
            other.n_layers,
            other.n_heads,
            other.d_head,
        ):
            raise ForgetlensError(
                f"{what}: head layout {other.architecture} {other.n_layers}x{other.n_heads}x{other.d_head} "
                f"differs from the base model's {self.architecture} {self.n_layers}x{self.n_heads}x{self.d_head}"
            )


@contextmanager
def head_hooks(model: torch.nn.Module, layout: HeadLayout, fn: HeadFn) -> Iterator[None]:
    """Call ``fn(layer, z)`` on every layer's per-head outputs during forward passes inside the block."""
    handles = []

    def make_hook(layer: int):
        def hook(module, args):
            z = layout.split(args[0])  # [batch, pos, head, d_head]
            new = fn(layer, z)
            if new is None:
                return None
            return (new.reshape(args[0].shape),) + tuple(args[1:])

        return hook

    try:
        for layer, proj in enumerate(layout.projections(model)):
            handles.append(proj.register_forward_pre_hook(make_hook(layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_heads(model: torch.nn.Module, layout: HeadLayout) -> Iterator[list[torch.Tensor]]:
    """Record every layer's output-projection input; yields a list filled during the forward pass.

    Entries are the tensors the model itself uses, [batch, pos, n_heads * d_head], with their
    autograd history (so gradients can be taken with respect to them); ``layout.split`` gives
    the per-head view.
    """
    captured: list[torch.Tensor] = []
    handles = []

    def hook(module, args):
        captured.append(args[0])

    try:
        for proj in layout.projections(model):
            handles.append(proj.register_forward_pre_hook(hook))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Temporarily stop parameter gradients (an activation-only backward); restores the flags afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
