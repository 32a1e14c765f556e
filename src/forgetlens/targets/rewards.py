"""Answer extraction and verifiable rewards for the science-QA target task.

A reply scores 1 only when it commits to exactly one option: a bare letter,
"(B)", "B.", "The answer is B", or the exact text of one option.  A reply that
names several letters or lists options ("A B C D", "A or B") scores 0 - a public
reproduction of RL's Razor rewarded "A B C D" because it matched a letter
anywhere, and RL learns to exploit exactly that.  ``strict`` accepts only a
bare letter (optionally in parentheses or followed by a period).
"""

from __future__ import annotations

import re
import string

_LETTER = r"\(?([A-D])\)?[.:)]?"
_BARE = re.compile(rf"^\s*{_LETTER}\s*$")
_ANSWER_IS = re.compile(
    rf"^\s*(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is|:)?\s*{_LETTER}\s*\.?\s*$", re.IGNORECASE
)
_STANDALONE_LETTER = re.compile(r"(?<![A-Za-z])([A-D])(?![A-Za-z])")


def extract_choice(reply: str, labels: list[str], options: list[str], strict: bool = False) -> str | None:
    """The single option letter a reply commits to, or None."""
    text = reply.strip()
    for end_marker in ("<|im_end|>", "<|endoftext|>"):
        text = text.split(end_marker)[0].strip()
    if m := _BARE.match(text):
        return m.group(1) if m.group(1) in labels else None
    if strict:
        return None
    if m := _ANSWER_IS.match(text):
        return m.group(1) if m.group(1) in labels else None
    normalised = normalise(text)
    matches = [label for label, option in zip(labels, options) if normalise(option) == normalised]
    if len(matches) == 1:
        return matches[0]
    # "B. Na" / "(B) Na": a letter followed by the text of that same option
    if m := re.match(rf"^\s*{_LETTER}\s+(.+)$", text):
        letter, rest = m.group(1), m.group(2)
        if letter in labels and normalise(options[labels.index(letter)]) == normalise(rest):
            return letter
    return None


def normalise(text: str) -> str:
    """Lower-case, drop punctuation other than what chemistry needs, collapse spaces."""
    keep = set(string.ascii_letters + string.digits + "()+=.-")
    text = "".join(c if c in keep or c.isspace() else " " for c in text.strip().rstrip("."))
    return " ".join(text.lower().split())


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.]*\d)")


def stated_values(reply: str) -> list[str]:
    """The distinct numbers a reply states, in order ("The smallest mass is 3 kg." -> ["3"])."""
    text = reply.split("<|im_end|>")[0].split("<|endoftext|>")[0]
    return list(dict.fromkeys(m.group(0) for m in _NUMBER.finditer(text)))


def score_reply(reply: str, record: dict, strict: bool = False) -> float:
    """1.0 for a correct answer to ``record`` (multiple choice or filling), else 0.0.

    A filling record whose ``details.scoring`` is ``one_value`` is answered by a reply that states exactly one
    number, the reference answer's ("The smallest mass is 3 kg." for "3 kg"); a reply naming several values
    ("3 or 5 kg", or the question's numbers repeated) scores 0.
    """
    if (record.get("details") or {}).get("scoring") == "one_value":
        return float(stated_values(reply) == stated_values(record["answer"]))
    if record.get("type") == "filling":
        return float(normalise(reply.split("<|im_end|>")[0]) == normalise(record["answer"]))
    labels, options = record["choices"]["label"], record["choices"]["text"]
    return float(extract_choice(reply, labels, options, strict) == record["answerKey"])


def format_reward(reply: str) -> float:
    """1.0 when a reply is a bare option letter, the format the instruction asks for."""
    return float(bool(_BARE.match(reply.split("<|im_end|>")[0])))
