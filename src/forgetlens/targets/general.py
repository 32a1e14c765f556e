"""Broad signals of what an instruction-tuned model knows and how it talks, beside the circuit tasks.

- :data:`CHAT_PROMPTS`: general chat requests unrelated to any target task, on which a fine-tuned model's
  forward KL to its base measures drift in ordinary conversation (RL's Razor's quantity, off-task).
- :func:`general_knowledge_records`: four-choice questions about world capitals, element symbols and SI
  units, scored by the option whose text is likeliest as the reply: general knowledge the fine-tune was not
  about.
"""

from __future__ import annotations

import random

from forgetlens.targets import science_qa
from forgetlens.tasks.vocab import CAPITALS

CHAT_PROMPTS = [
    "Give me three tips for sleeping better.",
    "Write a short poem about the sea.",
    "What is the difference between weather and climate?",
    "How do I boil an egg?",
    "Explain what a computer program is to a child.",
    "Suggest a name for a small bakery.",
    "Why do leaves change colour in autumn?",
    "Write a friendly email inviting a colleague to lunch.",
    "What are some good habits for studying?",
    "Describe a sunset in two sentences.",
    "How can I save money on groceries?",
    "What is photosynthesis?",
    "Tell me a fun fact about octopuses.",
    "How do I start learning to play the guitar?",
    "Summarise the story of Little Red Riding Hood.",
    "What should I pack for a weekend hiking trip?",
    "Explain why exercise is good for health.",
    "Write a haiku about winter.",
    "What is the purpose of a library?",
    "How do airplanes stay in the air?",
    "Give me a simple recipe for pancakes.",
    "What are the planets of the solar system?",
    "How can I be more productive in the morning?",
    "Explain the water cycle briefly.",
    "Write a thank-you note to a teacher.",
    "What is a healthy breakfast?",
    "Why is the sky blue?",
    "How do I care for a houseplant?",
    "What makes a good friend?",
    "Describe how a bicycle works.",
    "Give two reasons to learn a second language.",
    "What is the internet?",
]
"""General chat requests for off-task forward KL (written for forgetlens; none is about a target task)."""


def general_knowledge_records(seed: int = 0) -> list[dict]:
    """Every capital-city, element-symbol and SI-unit fact as one four-choice record (options drawn by ``seed``)."""
    rng = random.Random(f"general-knowledge:{seed}")
    records = [
        science_qa.choice_record(
            f"What is the capital of {country}?", capital, [c for _, c in CAPITALS], rng, subtask="capital"
        )
        for country, capital in CAPITALS
    ]
    for relation, subject, obj in science_qa.science_facts():
        records.append(science_qa.mcq_record(relation, subject, obj, rng))
    return records
