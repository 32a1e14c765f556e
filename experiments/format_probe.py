"""How fast multiple-choice letter binding forms: train a model on one corpus mixture, probe it as it goes.

    git worktree add /tmp/stage2 8b6173a    # the embedded model as shipped before the format stage existed
    python experiments/format_probe.py --start /tmp/stage2/src/forgetlens/models/embedded \
        --recipe '{"capital_mcq": 1.0}' --steps 500 --out /tmp/probe-capital
    python experiments/format_probe.py --start /tmp/probe-capital/step500 \
        --recipe '{"science_mcq": 0.8, "capital_mcq": 0.2}' --steps 500 --out /tmp/probe-science

The measurements behind ``PretrainConfig.format_stages``: a fresh AdamW at a constant learning rate (linear
warm-up), 64 documents per step, and every ``--every`` steps the letter accuracy (best of the four letter
logits, ``pretrain.mcq_letter_accuracy``) on capital-city and on each kind of science question, plus a
snapshot of the model under ``--out/stepN``.  The figures in the config and README (capital questions alone
0.22 -> 0.79 in about 400 steps; then 80 % science questions 0.25 -> 0.65 in about 400 more) came from
ad-hoc runs of this same procedure with other data-stream seeds, before this script existed; a rerun gives
the same procedure, not the same digits.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from forgetlens.models import corpus
from forgetlens.models.loading import load_model
from forgetlens.models.pretrain import BucketedStream, _step, mcq_letter_accuracy
from forgetlens.tasks import science_qa


def probe(model, tokenizer, n: int) -> dict[str, float]:
    model.eval()
    out = {"capital": mcq_letter_accuracy(model, tokenizer, corpus.SOURCES["capital_mcq"], n, seed=5)}
    for relation in science_qa.RELATIONS:
        out[relation] = mcq_letter_accuracy(
            model, tokenizer, lambda rng, r=relation: science_qa.science_mcq_document(rng, r), n, seed=5)
    model.train()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=Path, required=True, help="Model directory to start from.")
    parser.add_argument("--recipe", required=True, help="Corpus mixture as JSON: source -> share.")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--n-probe", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = json.loads(args.recipe)
    loaded = load_model(args.start)
    model, tokenizer = loaded.model, loaded.tokenizer
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05, betas=(0.9, 0.98))
    rng = random.Random(f"probe:{args.seed}")
    stream = BucketedStream(tokenizer, corpus.documents(recipe, rng), 64, 128, rng)
    model.train()
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            print(step, {k: round(v, 3) for k, v in probe(model, tokenizer, args.n_probe).items()}, flush=True)
            snapshot = args.out / f"step{step}"
            model.save_pretrained(str(snapshot))
            tokenizer.save_pretrained(str(snapshot))
        if step == args.steps:
            break
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 50)
        _step(model, opt, *stream.next_batch())


if __name__ == "__main__":
    main()
