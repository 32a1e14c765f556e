"""Can a model answer forgetlens's `induction` task by the copying shortcut, or must it do induction?

    python experiments/induction_shortcut.py embedded smollm2-135m [--n 400] [--threads 1]

`copying` repeats its word sequence from the first word ("copy: a b c d e | a b c" -> " d"), so "the word that
follows the repeat's length from the start" (the earliest word not yet repeated) names the answer without
finding the earlier occurrence of the current word.  `induction` repeats from a random later word
("copy: a b c d e | b c" -> " d"), where only induction (find the current word earlier, copy its successor)
gives the answer.  Per model this prints, on held-out prompts of each task:

- accuracy (top-1 over the vocabulary is the answer);
- how often the shortcut's word is the answer (1 on `copying`, 0 on `induction` by construction: computed from
  the prompts, not assumed);
- how often the model's top-1 is the shortcut's word: a model that copies by the shortcut picks it on
  `induction` prompts too.
"""

from __future__ import annotations

import argparse

import torch

from forgetlens.errors import ForgetlensError
from forgetlens.models.forward import answer_logits
from forgetlens.models.loading import load_model
from forgetlens.tasks import encode_examples, get_task


def shortcut_word(clean: str) -> str:
    """The word after the repeat's length from the sequence's start (with its leading space)."""
    seq, repeat = clean.removeprefix("copy: ").split(" | ")
    return " " + seq.split()[len(repeat.split())]


@torch.no_grad()
def rates(loaded, task_name: str, n: int) -> dict[str, float]:
    examples = get_task(task_name).examples(n, seed=7)
    batch = encode_examples(loaded.tokenizer, examples, task_name)
    top = answer_logits(loaded.model, batch.clean_ids, batch.attention_mask, batch.answer_pos).argmax(-1)
    shortcut = torch.tensor(
        [loaded.tokenizer.convert_tokens_to_ids(loaded.tokenizer.tokenize(shortcut_word(e.clean)))[0] for e in examples]
    )
    return {
        "accuracy": (top == batch.answer_ids).float().mean().item(),
        "shortcut is the answer": (shortcut == batch.answer_ids).float().mean().item(),
        "model picks the shortcut": (top == shortcut).float().mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model names or directories (embedded, smollm2-135m, ...)")
    parser.add_argument("--n", type=int, default=400, help="prompts per task")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'model':<16}{'task':<11}{'accuracy':>10}{'shortcut = answer':>19}{'model picks shortcut':>22}")
    for spec in args.models:
        try:
            loaded = load_model(spec)
        except ForgetlensError as error:
            raise SystemExit(f"error: {error}") from None
        for task_name in ("copying", "induction"):
            r = rates(loaded, task_name, args.n)
            print(
                f"{spec:<16}{task_name:<11}{r['accuracy']:>10.3f}{r['shortcut is the answer']:>19.3f}"
                f"{r['model picks the shortcut']:>22.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
