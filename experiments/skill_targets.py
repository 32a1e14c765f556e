"""Target tasks that need a skill rather than a fact, tried on the stage-3 embedded model (2026-11-24;
docs/results/targets-history.md: run in a checkout of acf0495 to reproduce the figures).  Writes
SciKnowEval-format JSONL for ``forgetlens finetune --data``:

    python experiments/skill_targets.py open-book OUT.jsonl [--distractor-statement]
    python experiments/skill_targets.py compare OUT.jsonl
    python experiments/skill_targets.py filling OUT.jsonl
    python experiments/skill_targets.py statements
    python experiments/skill_targets.py substage OUT_DIR [--steps 400] [--share 0.25] [--lr 1e-3]
    forgetlens finetune --method sft --data OUT.jsonl --seed 100 --lr 1e-4 --checkpoint-every 40 --out RUN

- ``open-book``: every fact of the built-in table, 8 option orders each, after a SciQ-style support line stating
  the fact.  With ``--distractor-statement`` the line also states one other fact of the same relation (fixed per
  fact, order fixed per fact) whose object is always a wrong option, so matching the option to the support is
  not enough: the subject has to be matched too.  The support is part of the question text, so ``finetune``'s
  split by question text holds each fact out whole.  Measured: base 0.250 / 0.245 (without / with the
  distractor statement); SFT 120 steps: 0.361 (lr 1e-4), 0.343 (3e-4), 0.329 (1e-3, IOI retention 0.36) /
  0.324 (1e-4).
- ``compare``: "Four samples have a mass of 2, 0, 1 and 3 kg. Which mass is the smallest?" over every set of
  four distinct digits, four quantities, largest or smallest; held-out questions are new digit sets.
  Measured: base 0.024 (it rarely answers with a letter); SFT 0.325 (lr 1e-4), 0.381 (3e-4).
- ``filling``: every fact of the built-in table as an open question answered with the object ("What is the
  chemical symbol of sodium?" -> "Na"; SciKnowEval ``filling`` records, scored by normalised exact match), split
  by fact.  The base completes every fact's statement correctly (``statements``: "The chemical symbol of sodium
  is" -> "Na", 90 of 90, by the first token's logit among all of the relation's objects) but answers the question with option-like text.  Measured (seed 100, lr 1e-4, 120 steps): base 0.000;
  SFT 0.000 (it learns to answer with one short token, the wrong one: "Ar" for hydrogen), RL 0.000.
- ``substage``: continues the shipped model for ``--steps`` steps on the final pretraining sub-stage's mixture
  plus a ``--share`` of open-book questions about invented people (support: two statements such as "Mary lives
  in Oslo. John lives in Lima."), to see whether the open-book skill forms at all.  Measured (400 steps, share
  0.25, lr 1e-3): invented open-book 0.255, science open-book 0.267 / 0.237 (without / with the distractor
  statement), prior tasks 0.975-1.0 (rerun with this script: the same figures).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

from forgetlens.tasks import science_qa
from forgetlens.tasks.comparisons import QUANTITIES, compare_record
from forgetlens.tasks.vocab import CAPITALS, COPY_WORDS, NAMES, OBJECTS


def open_book_records(distractor_statement: bool, seed: int = 0) -> list[dict]:
    """Science facts asked after a support line (see the module docstring)."""
    rng = random.Random(f"open-book:{seed}")
    out = []
    for relation, subject, obj in science_qa.science_facts():
        facts, question, statement = science_qa.RELATIONS[relation]
        support, other = [statement.format(s=subject, o=obj)], None
        if distractor_statement:
            other_subject, other = rng.choice([(s, o) for s, o in facts if o != obj])
            support.append(statement.format(s=other_subject, o=other))
            rng.shuffle(support)
        for _ in range(8):
            record = science_qa.mcq_record(relation, subject, obj, rng)
            texts = record["choices"]["text"]
            if other is not None and other not in texts:
                texts[texts.index(rng.choice([t for t in texts if t != obj]))] = other
            record["question"] = " ".join(support) + "\n" + question.format(s=subject)
            out.append(record)
    return out


def filling_records() -> list[dict]:
    """One open question per fact of the built-in table (see the module docstring)."""
    return [{"question": science_qa.RELATIONS[relation][1].format(s=subject), "type": "filling", "answer": obj,
             "prompt": {"default": "Answer the question with a name or symbol only."}}
            for relation, subject, obj in science_qa.science_facts()]


def compare_records(seed: int = 0) -> list[dict]:
    """Which of four quantities is the largest / smallest (see the module docstring)."""
    rng = random.Random(seed)
    return [compare_record(quantity, unit, digits, rng) for quantity, unit in QUANTITIES
            for digits in itertools.combinations(range(10), 4)]


INVENTED = [("{n} lives in {o}.", "Where does {n} live?", [c for _, c in CAPITALS]),
            ("{n} has a {o}.", "What does {n} have?", OBJECTS),
            ("{n} likes the {o}.", "What does {n} like?", COPY_WORDS)]


def invented_open_book_document(rng: random.Random) -> str:
    """An open-book question about invented people, in chat format, answered with its letter."""
    statement, question, objects = rng.choice(INVENTED)
    asked, other = rng.sample(NAMES, 2)
    answer, other_object, *wrong = rng.sample(objects, 4)
    support = [statement.format(n=asked, o=answer), statement.format(n=other, o=other_object)]
    rng.shuffle(support)
    options = [answer, other_object, *wrong]
    rng.shuffle(options)
    question_text = " ".join(support) + "\n" + question.format(n=asked)
    return science_qa.chat_mcq_document(science_qa.options_record(question_text, options, answer))


def continued_pretraining(source: str, make_document, share: float, lr: float, stream_seed: str):
    """-> (shipped model on the CPU, its tokenizer, ``step(i)``): ``step`` takes optimizer step ``i`` on the final
    pretraining sub-stage's mixture with ``share`` of ``make_document`` (registered as corpus source ``source``),
    at ``lr`` after the build's linear warm-up, and returns the loss."""
    import torch

    from forgetlens.config import PretrainConfig
    from forgetlens.models import corpus, load_model
    from forgetlens.models.pretrain import BucketedStream, _step

    corpus.SOURCES[source] = make_document
    cfg = PretrainConfig()
    recipe = {name: s * (1 - share) for name, s in cfg.format_stages[-1].recipe.items()}
    recipe[source] = share
    loaded = load_model("embedded", device="cpu")  # where the recorded figures were measured
    model, tokenizer = loaded.model, loaded.tokenizer
    torch.set_num_threads(cfg.threads)
    rng = random.Random(stream_seed)
    stream = BucketedStream(tokenizer, corpus.documents(recipe, rng), cfg.batch_size, cfg.max_len, rng)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def step(i: int) -> float:
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (i + 1) / cfg.warmup)
        return _step(model, opt, *stream.next_batch())

    model.train()
    return model, tokenizer, step


def substage(out: Path, steps: int, share: float, lr: float) -> None:
    """Continue the shipped model with open-book documents mixed in; print the accuracies it reaches."""
    from forgetlens.models.pretrain import evaluate_base, mcq_letter_accuracy

    # "probe": the stream seed the measured run used
    model, tokenizer, step = continued_pretraining("invented_open_book", invented_open_book_document, share, lr,
                                                   "probe")
    for i in range(steps):
        loss = step(i)
        if i % 100 == 0:
            print(f"step {i}: loss {loss:.3f}", flush=True)
    model.eval()
    for name, result in evaluate_base(model, tokenizer, 200, seed=10_000).items():
        print(f"{name}: {result['accuracy']:.3f}")
    print(f"invented open-book: {mcq_letter_accuracy(model, tokenizer, invented_open_book_document, 200, 1):.3f}")
    for flag in (False, True):
        records = open_book_records(flag)

        def document(rng, records=records):
            record = rng.choice(records)
            return science_qa.chat_mcq_document(record)

        label = "with" if flag else "without"
        print(f"science open-book, {label} distractor statement: "
              f"{mcq_letter_accuracy(model, tokenizer, document, 300, 2):.3f}")
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def statement_accuracy() -> None:
    """Print, per relation, how often the shipped model completes a fact's statement with the right object."""
    import torch

    from forgetlens.models import load_model

    loaded = load_model("embedded")
    model, tokenizer = loaded.model, loaded.tokenizer

    def first_token(text: str) -> int:
        return tokenizer(" " + text, add_special_tokens=False)["input_ids"][0]

    for relation, (facts, _, statement) in science_qa.RELATIONS.items():
        objects = sorted({o for _, o in facts})
        correct = 0
        for subject, obj in facts:
            prefix = statement.format(s=subject, o="\0").split("\0")[0].rstrip()
            ids = tokenizer(prefix, add_special_tokens=False, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, -1]  # [vocab]
            correct += max(objects, key=lambda o: logits[first_token(o)].item()) == obj
        print(f"{relation}: {correct} of {len(facts)} statements completed with the right object")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    book = sub.add_parser("open-book")
    book.add_argument("out", type=Path)
    book.add_argument("--distractor-statement", action="store_true")
    sub.add_parser("compare").add_argument("out", type=Path)
    sub.add_parser("filling").add_argument("out", type=Path)
    sub.add_parser("statements")
    stage = sub.add_parser("substage")
    stage.add_argument("out", type=Path)
    stage.add_argument("--steps", type=int, default=400)
    stage.add_argument("--share", type=float, default=0.25)
    stage.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    if args.command == "substage":
        substage(args.out, args.steps, args.share, args.lr)
        return
    if args.command == "statements":
        statement_accuracy()
        return
    make = {"open-book": lambda: open_book_records(args.distractor_statement), "compare": compare_records,
            "filling": filling_records}[args.command]
    rows = make()
    args.out.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    print(f"{len(rows)} records -> {args.out}")


if __name__ == "__main__":
    main()
