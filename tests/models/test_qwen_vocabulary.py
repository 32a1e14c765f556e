"""Every prior task renders for the Qwen vocabulary that Qwen2 and Qwen2.5 share.

Qwen2's and Qwen2.5's tokenizers are Qwen's byte-level BPE (151,643 ranks, the same file as Qwen-1's
``qwen.tiktoken``; Qwen2 technical report, Yang et al. 2024, section 2.1) plus control tokens; Hugging Face's
``Qwen2TokenizerFast`` adds NFC normalisation, which leaves the ASCII task words unchanged.  No Qwen model is on
this machine, so the test rebuilds the tokenizer from the rank file with ``tiktoken`` and the pre-tokenizer
regex forgetlens's own tokenizer uses, and puts every task through the checks a real run makes at load time
(``check_vocabulary``, ``encode_examples``: single-token answers, equal clean/corrupted lengths, answers that do
not merge with the prompt).

The rank file: ``FORGETLENS_QWEN_TIKTOKEN``, or the copy inside an installed ``dashscope`` package.  CI fetches
it (``pip download dashscope --no-deps``) and sets ``FORGETLENS_REQUIRE_QWEN_VOCAB=1`` so a missing file fails.
"""

import base64
import importlib.util
import os
from pathlib import Path

import pytest

from forgetlens.embedded_build.tokenizer import QWEN2_PATTERN
from forgetlens.tasks.base import check_vocabulary, encode_examples
from forgetlens.tasks.registry import TASKS, get_task


def _rank_file() -> Path | None:
    if os.environ.get("FORGETLENS_QWEN_TIKTOKEN"):
        return Path(os.environ["FORGETLENS_QWEN_TIKTOKEN"])
    spec = importlib.util.find_spec("dashscope")
    if spec and spec.origin:
        path = Path(spec.origin).parent / "resources" / "qwen.tiktoken"
        return path if path.exists() else None
    return None


class TiktokenAsHF:
    """The slice of the Hugging Face tokenizer interface that task rendering uses."""

    pad_token_id = None

    def __init__(self, encoding):
        self.encoding = encoding

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": self.encoding.encode(text, disallowed_special=())}


@pytest.fixture(scope="module")
def qwen():
    path = _rank_file()
    if path is None or not path.exists():
        if os.environ.get("FORGETLENS_REQUIRE_QWEN_VOCAB") == "1":
            pytest.fail(
                f"Qwen rank file not found (FORGETLENS_QWEN_TIKTOKEN={os.environ.get('FORGETLENS_QWEN_TIKTOKEN')})"
            )
        pytest.skip("no qwen.tiktoken here (set FORGETLENS_QWEN_TIKTOKEN or install dashscope)")
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {}
    for line in path.read_text().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    assert len(ranks) == 151643, f"{path}: expected Qwen's 151,643 BPE ranks, found {len(ranks)}"
    return TiktokenAsHF(tiktoken.Encoding("qwen", pat_str=QWEN2_PATTERN, mergeable_ranks=ranks, special_tokens={}))


def test_the_rebuilt_tokenizer_is_qwens(qwen):
    # ids fixed by Qwen's rank file: digits split one by one, a space before a number is its own token
    assert qwen(" 1732")["input_ids"] == [220, 16, 22, 18, 17]
    assert len(qwen(" Mary")["input_ids"]) == 1 and len(qwen("Hello world")["input_ids"]) == 2


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_renders_for_the_qwen_vocabulary(qwen, name):
    task = get_task(name)
    check_vocabulary(qwen, task)
    batch = encode_examples(qwen, task.examples(300, seed=0), name)
    assert len(batch) == 300 and bool((batch.answer_ids != batch.distractor_ids).all())


def test_a_word_qwen_splits_is_refused_by_name(qwen):
    from forgetlens.errors import ForgetlensError
    from forgetlens.tasks.fact_recall import FactRecallTask

    with pytest.raises(ForgetlensError, match="Ouagadougou"):
        check_vocabulary(qwen, FactRecallTask([("Spain", "Ouagadougou"), ("France", "Paris")]))
