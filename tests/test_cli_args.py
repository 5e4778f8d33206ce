"""Every subcommand given bad values prints one line (``slimtorch: error: ...``) and exits non-zero.

The same promise recipes keep: no traceback, the offending flag or field named.
"""

from __future__ import annotations

import contextlib
import io

import pytest

from slimtorch.cli import build_parser, main

R = "recipes/lenet300_mnist.yaml"

# (argv, a fragment the one-line error must contain)
CASES = [
    (["run", R, "--nproc", "-1"], "--nproc: must be >= 0"),
    (["run", "nonexistent.yaml"], "does not exist"),
    (["run", R, "stages.0.epochs=-3", "-o", "{tmp}/run"], "stages[0].epochs"),
    (["validate", R, "seed=abc"], "'seed'"),
    (["validate", R, "noequals"], "key=value"),
    (["train", "lenet5", "-o", "{tmp}/m.safetensors", "--epochs", "-3"], "--epochs: must be >= 0"),
    (["train", "lenet5", "-o", "{tmp}/m.safetensors", "--batch-size", "0"], "--batch-size"),
    (["train", "lenet5", "-o", "{tmp}/m.safetensors", "--lr", "nan"], "--lr"),
    (["train", "lenet5", "-o", "{tmp}/m.safetensors", "--weight-decay", "-1"], "--weight-decay"),
    (["train", "nope_model", "-o", "{tmp}/m.safetensors", "--epochs", "0"], "unknown model 'nope_model'"),
    (["train", "-o", "{tmp}/m.safetensors"], "name a model"),
    (["eval", "missing.safetensors"], "does not exist"),
    (["eval", "lenet5", "--data", "nope"], "unknown dataset 'nope'"),
    (["eval", "README.md"], "not a valid safetensors file"),
    (["eval", "lenet5", "--kwargs", "[1]"], "--kwargs: expected a JSON object"),
    (["eval", "lenet5", "--kwargs", "{}"], "give the class too"),
    (["eval", "--class", "no_colon"], "package.module:ClassName"),
    (["eval", "--hf", "{tmp}", "--task", "translation"], "--task: invalid choice"),
    (["measure", "lenet5", "--threads", "0"], "--threads: must be >= 1"),
    (["inspect", "lenet5", "--threads", "x"], "expected an integer"),
    (["pack", "lenet5", "-o", "{tmp}/x.slim", "--max-codebook", "0"], "--max-codebook"),
    (["pack", "lenet5", "-o", "{tmp}/x.slim", "--method", "zip"], "--method: invalid choice"),
    (["unpack", "README.md", "-o", "{tmp}/y.safetensors"], "not a .slim file"),
    (["unpack", "missing.slim", "-o", "{tmp}/y.safetensors"], "missing.slim"),
    (["report", "{tmp}/no_run"], "not a finished slimtorch run"),
    (["compare", "{tmp}/no_run", "{tmp}/no_run2"], "not a finished slimtorch run"),
    (["auto", "lenet5", "-o", "{tmp}/a", "--max-drop", "-1"], "--max-drop"),
    (["auto", "lenet5", "-o", "{tmp}/a", "--budget", "soon"], "invalid budget 'soon'"),
    (["auto", "lenet5", "-o", "{tmp}/a", "--finetune-epochs", "-2"], "--finetune-epochs"),
    (["auto", "lenet5", "-o", "{tmp}/a", "--distill-alpha", "2"], "--distill-alpha"),
    (["auto", "lenet5", "-o", "{tmp}/a", "--bits", "six"], "--bits"),
    (["auto", "lenet5", "-o", "{tmp}/a", "--target", "speed"], "--target: invalid choice"),
    (["list", "--bogus"], "unrecognized arguments: --bogus"),
    (["generate", "smollm2", "--prompt", "hi", "--max-new-tokens", "0"], "generate"),
    (["eval", "lenet5", "--window", "1"], "--window: must be >= 2"),
    (["eval", "lenet5", "--windows", "0"], "--windows: must be >= 1"),
    (["eval", "lenet5", "--data", "text"], "--data text is for causal language models"),
    (["generate", "lenet5"], "the following arguments are required: --prompt"),
    (["generate", "lenet5", "--prompt", "hi", "--top-p", "1.5"], "--top-p: must be in (0, 1]"),
    (["generate", "lenet5", "--prompt", "hi", "--temperature", "-1"], "--temperature: must be > 0"),
    (["generate", "lenet5", "--prompt", "hi", "--greedy", "--temperature", "0.7"], "--greedy decodes without"),
    (["generate", "lenet5", "--prompt", "hi"], "generate needs a causal language model"),
    (["generate", "lenet5", "--prompt", "hi", "--top-k", "0"], "--top-k: must be >= 1"),
    (["export-lm", "lenet5", "out", "--embedding-bits", "3"], "--embedding-bits: invalid choice"),
    (["export-lm", "lenet5", "out", "--embedding-group-size", "48"], "embedding_group_size 48 is not a power of two"),
    (["export-lm", "lenet5", "out"], "export-lm needs a causal language model"),
]


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse exits itself
            rc = exc.code
    return rc, err.getvalue()


@pytest.mark.parametrize("argv, fragment", CASES, ids=[" ".join(c[0][:4]) for c in CASES])
def test_bad_values_give_one_line_and_a_nonzero_exit(argv, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1])
    rc, err = _run([a.replace("{tmp}", str(tmp_path)) for a in argv])
    lines = err.strip().splitlines()
    assert rc != 0
    assert len(lines) == 1 and lines[0].startswith("slimtorch: error: "), err
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_every_subcommand_has_a_bad_value_case():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) <= {argv[0] for argv, _ in CASES}
