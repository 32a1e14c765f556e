"""Cost of circuit discovery and of measuring one checkpoint, in forward-equivalents, measured side by side.

    python bench/measurement.py --model embedded --prompts 256 --old-discovery --old-measure
    python bench/measurement.py --model smollm2-135m --prompts 256 --measure-prompts 64 --old-measure \
        --discovery-tasks induction,ioi,greater_than_year,fact_recall
    python bench/measurement.py --model smollm2-135m --prompts 16 --measure-prompts 16 --task induction --anatomy
    python bench/measurement.py --shape Qwen/Qwen2.5-3B-Instruct --prompts 16 --measure-prompts 8 --no-total \
        --circuit-k 16
    python bench/measurement.py --model smollm2-135m --prompts 32 --measure-prompts 8 --no-total --dbm --dbm-all \
        --discovery-tasks induction,ioi,greater_than_year,fact_recall

For one model it times, on the same prompts and threads:

* a plain forward pass over the prompts (the unit: one forward-equivalent, FE) and an attribution pass
  (clean forward + activation-only backward + corrupted forward), giving a backward's measured cost;
* per task of ``--discovery-tasks``, discovery (``discover_circuit``: attribution, then k by bisection) and, with
  ``--old-discovery``, the same with the
  faithfulness curve at every size of the default grid (``--full-curve``, what discovery did before);
* measuring one checkpoint against the base on ``--task``: first-order CMAP for every head, exact patching for C0
  and the top-M heads (``--top-m``), with and without total CMAP; and with ``--old-measure`` exact patching of every
  head (on ``--old-measure-prompts`` prompts: the FE count per prompt does not depend on how many); with
  ``--anatomy``, where the checkpoint's change lives (``measure/anatomy.py``);
* with ``--dbm``, per discovery task, differentiable binary masking (``circuits/dbm.py``, the last-token fast
  path) and, with ``--dbm-all``, the same masks mixed at every position (a full forward per step) beside it.

Each cost is printed as wall time / the plain forward's wall time on the same prompts (FE), and as full forward
passes counted (prompt rows through the last block / prompts).  The checkpoint is the base model with a small
random change to every weight (for ``--shape``, the base model itself, as two copies of a 3B model do not fit
in memory; the cost does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch
from attribution import random_model  # noqa: E402  (bench/ is run as a script directory)

from forgetlens.circuits.circuit import head_mask, rank_heads
from forgetlens.circuits.discover import discover_circuit, task_splits
from forgetlens.circuits.patching import chunks, run_metric
from forgetlens.config.options import DBMConfig, DiscoveryConfig
from forgetlens.measure.anatomy import measure_anatomy
from forgetlens.measure.circuit_damage import circuit_measurements
from forgetlens.measure.first_order_cmap import base_chunks
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import load_model
from forgetlens.tasks import encode_examples, get_task


class PassCounter:
    """Counts prompt rows through the models' last attention block (full forward passes of either model;
    the attention-only calls of head-local CMAP call earlier blocks' attention only and are excluded)."""

    def __init__(self, models, layout: HeadLayout):
        self.modules = list({id(m): layout.attentions(m)[-1][1] for m in models}.values())
        self.rows = 0

    def __enter__(self):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            self.rows += hidden.shape[0]

        self.handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in self.modules]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def cost(models, layout, n_prompts: int, seconds_per_forward: float, fn) -> tuple[object, dict]:
    with PassCounter(models, layout) as counter:
        out, seconds = timed(fn)
    return out, {"seconds": seconds, "fe": seconds / seconds_per_forward, "passes": counter.rows / n_prompts}


def forward_seconds(model, batch, batch_size: int = 64) -> float:
    def run():
        for part in chunks(batch, batch_size, next(model.parameters()).device):
            run_metric(model, part, "logit_diff")

    run()  # warm-up
    return min(timed(run)[1] for _ in range(2))


def perturbed(model, scale: float = 1e-3):
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * p.std() * torch.randn(p.shape, generator=g))
    return out


def row(name: str, c: dict) -> str:
    return f"{name:<56}{c['seconds']:>10.1f}{c['fe']:>10.1f}{c['passes']:>10.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--shape", default=None, help="random weights of this known architecture instead of --model")
    parser.add_argument("--task", default="ioi", help="the task whose circuit the checkpoint measurement uses")
    parser.add_argument(
        "--discovery-tasks", default=None, help="comma-separated tasks to time discovery on (default: --task)"
    )
    parser.add_argument("--prompts", type=int, default=256, help="discovery prompts")
    parser.add_argument("--measure-prompts", type=int, default=64, help="evaluation prompts for the checkpoint")
    parser.add_argument("--old-measure-prompts", type=int, default=16)
    parser.add_argument("--top-m", type=int, default=8)
    parser.add_argument(
        "--circuit-k",
        type=int,
        default=None,
        help="C0 for the checkpoint measurement = the top-k heads (random-weight shapes, whose "
        "faithfulness-0.8 circuit can be most heads); default: the discovered circuit",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--old-discovery", action="store_true", help="also time discovery at every size")
    parser.add_argument("--old-measure", action="store_true", help="also time exact patching of every head")
    parser.add_argument("--no-total", action="store_true", help="skip the measurement with total CMAP")
    parser.add_argument(
        "--anatomy", action="store_true", help="also time the anatomy of the checkpoint (measure/anatomy.py)"
    )
    parser.add_argument("--anatomy-min-block", type=int, default=4)
    parser.add_argument("--dbm", action="store_true", help="also time DBM discovery (last-token fast path)")
    parser.add_argument("--dbm-all", action="store_true", help="and DBM mixing heads at every position")
    parser.add_argument("--dbm-steps", type=int, default=300, help="DBM steps (cost is linear in them)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.shape:
        model, tokenizer = random_model(args.shape, "cpu", torch.float32)
        name = f"{args.shape} (random weights)"
    else:
        loaded = load_model(args.model)
        model, tokenizer, name = loaded.model, loaded.tokenizer, args.model
    layout = HeadLayout.of(model)
    task = get_task(args.task)
    print(
        f"model={name} ({layout.n_layers}x{layout.n_heads} = {layout.n_total} heads) task={task.name} "
        f"threads={args.threads} torch={torch.__version__}",
        flush=True,
    )
    print(f"{'what':<56}{'seconds':>10}{'FE':>10}{'passes':>10}")

    cfg = DiscoveryConfig(n_examples=args.prompts, seed=0)
    circuits = {}
    for name in (args.discovery_tasks or task.name).split(","):
        one = get_task(name)
        discovery, _ = task_splits(tokenizer, one, args.prompts, 0)
        fwd = forward_seconds(model, discovery)
        print(
            row(f"{name}: plain forward, {args.prompts} prompts", {"seconds": fwd, "fe": 1.0, "passes": 1.0}),
            flush=True,
        )
        circuits[name], c = cost(
            [model],
            layout,
            args.prompts,
            fwd,
            lambda: discover_circuit(model, tokenizer, one, cfg),  # noqa: B023
        )
        print(
            row(
                f"{name}: discovery, attribution + bisection (k={circuits[name].k}, "
                f"{len(circuits[name].curve) - 2} sizes)",
                c,
            ),
            flush=True,
        )
        if args.old_discovery:
            full = DiscoveryConfig(n_examples=args.prompts, seed=0, full_curve=True)
            old, c = cost([model], layout, args.prompts, fwd, lambda: discover_circuit(model, tokenizer, one, full))  # noqa: B023
            print(row(f"{name}: discovery, every size of the grid ({len(old.curve)} sizes; k={old.k})", c), flush=True)
        for positions in ("last", "all") if args.dbm_all else ("last",) if args.dbm else ():
            dbm_cfg = DiscoveryConfig(
                method="dbm", n_examples=args.prompts, dbm=DBMConfig(steps=args.dbm_steps, positions=positions)
            )
            found, c = cost(
                [model],
                layout,
                args.prompts,
                fwd,
                lambda: discover_circuit(model, tokenizer, one, dbm_cfg),  # noqa: B023
            )
            print(
                row(
                    f"{name}: DBM, {positions} positions, {args.dbm_steps} steps (k={found.k}; "
                    f"{found.dbm.forward_equivalents:.1f} token-FE)",
                    c,
                ),
                flush=True,
            )
    circuit = circuits.get(task.name) or discover_circuit(model, tokenizer, task, cfg)

    heads = circuit.heads if args.circuit_k is None else rank_heads(circuit.scores)[: args.circuit_k]
    mask = head_mask(heads, layout)
    evaluation = encode_examples(tokenizer, task.examples(args.measure_prompts, 7), task.name)
    tuned = model if args.shape else perturbed(model)
    fwd = forward_seconds(model, evaluation)
    n = args.measure_prompts
    print(row(f"plain forward, {n} prompts", {"seconds": fwd, "fe": 1.0, "passes": 1.0}), flush=True)
    cache, c = cost([model], layout, n, fwd, lambda: base_chunks(model, layout, evaluation, metric="logit_diff"))
    print(row("base side of first-order CMAP (once per task, all checkpoints)", c), flush=True)
    for total in (False,) if args.no_total else (False, True):
        _, c = cost(
            [model, tuned],
            layout,
            n,
            fwd,
            lambda: circuit_measurements(
                tuned,
                layout,
                evaluation,
                mask,
                base=model,
                top_m=args.top_m,
                total_cmap=total,  # noqa: B023
                base_cache=cache,
                metric="logit_diff",
            ),
        )
        what = f"checkpoint, first-order + exact on |C0|+M = {len(heads)}+{args.top_m}" + (", +total" if total else "")
        print(row(what, c), flush=True)
    if args.anatomy:
        anatomy, c = cost(
            [model, tuned],
            layout,
            n,
            fwd,
            lambda: measure_anatomy(
                model, tuned, tokenizer, layout, evaluation, mask, min_block=args.anatomy_min_block
            ),
        )
        print(row(f"checkpoint anatomy (its own count: {anatomy.forward_passes:.1f} FE)", c), flush=True)
    if args.old_measure:
        small = encode_examples(tokenizer, task.examples(args.old_measure_prompts, 7), task.name)
        fwd_small = forward_seconds(model, small)
        _, c = cost(
            [model, tuned],
            layout,
            args.old_measure_prompts,
            fwd_small,
            lambda: circuit_measurements(
                tuned, layout, small, mask, base=model, top_m=None, total_cmap=True, metric="logit_diff"
            ),
        )
        print(row(f"checkpoint, exact everywhere + total ({args.old_measure_prompts} prompts)", c), flush=True)
    print(
        f"budget: |C0| + M + 10 = {len(heads) + args.top_m + 10} FE; bisection sizes <= "
        f"{math.ceil(math.log2(layout.n_total + 1))}"
    )


if __name__ == "__main__":
    main()
