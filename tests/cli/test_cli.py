"""The command line: output format and one-line errors for bad input."""

import json

import pytest
from helpers import make_tiny, run_cli


def forgetlens(*args, cwd=None):
    return run_cli(*args, cwd=cwd)  # in-process (``python -m forgetlens`` itself: test_readme.py)


def assert_one_line_error(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_tasks_lists_one_name_per_line():
    result = forgetlens("tasks")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    names = [line.split("\t")[0] for line in lines]
    assert names[:4] == ["induction", "ioi", "greater_than_year", "fact_recall"]
    assert "default for: embedded" in lines[names.index("copying")]
    assert "default for: real models, embedded" in lines[names.index("ioi")]


def test_discover_writes_the_documented_json(tmp_path):
    out = tmp_path / "ioi.json"
    result = forgetlens("discover", "--task", "ioi", "--n-examples", "32", "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    for key in ("task", "model", "method", "heads", "circuit", "faithfulness_curve"):
        assert key in data
    layout = data["layout"]
    assert len(data["heads"]) == layout["n_layers"] * layout["n_heads"]
    assert set(data["heads"][0]) == {"layer", "head", "score"}
    assert data["circuit"]["k"] == len(data["circuit"]["heads"])
    assert data["model"] == "embedded" and data["method"] == "attribution"
    assert "faithfulness" in result.stdout and "rank" in result.stdout


@pytest.mark.parametrize(
    "args,needles",
    [
        (["discover", "--task", "nope", "--out", "x.json"], ["unknown task 'nope'"]),
        (
            ["discover", "--task", "ioi", "--model", "/no/such/model", "--out", "x.json"],
            ["/no/such/model", "does not exist"],
        ),
        (["discover", "--task", "ioi", "--method", "magic", "--out", "x.json"], ["--method", "magic"]),
        (["discover", "--task", "ioi", "--n-examples", "0", "--out", "x.json"], ["--n-examples"]),
    ],
)
def test_bad_input_gives_one_line(tmp_path, args, needles):
    result = forgetlens(*args, cwd=tmp_path)
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "x.json").exists()


def test_unsupported_architecture_is_one_line(tmp_path, tokenizer):
    from transformers import OPTConfig, OPTForCausalLM

    model = OPTForCausalLM(
        OPTConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            ffn_dim=32,
            max_position_embeddings=64,
            word_embed_proj_dim=16,
        )
    )
    model.save_pretrained(tmp_path / "opt")
    tokenizer.save_pretrained(tmp_path / "opt")
    result = forgetlens(
        "discover", "--task", "ioi", "--model", str(tmp_path / "opt"), "--out", str(tmp_path / "o.json")
    )
    assert_one_line_error(result, "unsupported architecture 'opt'")


def test_model_directory_without_config_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = forgetlens(
        "discover", "--task", "ioi", "--model", str(tmp_path / "empty"), "--out", str(tmp_path / "o.json")
    )
    assert_one_line_error(result, "has no config.json")


def test_multi_token_answer_from_a_foreign_tokenizer_is_one_line(tmp_path):
    """A model whose tokenizer splits the task's names: the error names the word."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.:|'"))
    vocab = {"<eos>": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    raw = Tokenizer(models.BPE(vocab, merges=[], unk_token="<eos>"))  # one token per character
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<eos>")
    model = make_tiny("llama", len(vocab))
    model.save_pretrained(tmp_path / "charlm")
    tok.save_pretrained(tmp_path / "charlm")
    result = forgetlens(
        "discover", "--task", "ioi", "--model", str(tmp_path / "charlm"), "--out", str(tmp_path / "o.json")
    )
    assert_one_line_error(result, "task ioi", "is 5 tokens", "single tokens")
