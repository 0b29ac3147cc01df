import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tfa_core.cli import main

TEXT = "Now is the winter of our discontent made glorious summer by this sun of York.\n" * 60


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def tiny_run_args(corpus, out, batch_size=4, steps=3, eval_interval=None):
    return ["train", "--data", str(corpus), "--n-layer", "2", "--n-embd", "32", "--block-size", "32",
            "--batch-size", str(batch_size), "--steps", str(steps),
            "--eval-interval", str(eval_interval or steps), "--eval-batches", "1", "--dropout", "0",
            "--warmup-steps", "1", "--no-progress", "--out", str(out)]


def test_train_info_generate_evaluate(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(tiny_run_args(corpus, run, steps=4)) == 0
    out = capsys.readouterr().out
    assert "FactoredALiBi: " in out and "step 4: validation loss" in out
    assert (run / "checkpoints" / "step-00000004" / "model.safetensors").is_file()

    assert main(["info", str(run)]) == 0
    info = capsys.readouterr().out
    assert "(step 4)" in info and "n_layer                  2" in info and "last eval" in info

    assert main(["generate", str(run), "--prompt", "Now is", "--max-new-tokens", "20", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("Now is") and len(first[:-1]) == len("Now is") + 20  # print adds one newline
    assert main(["generate", str(run), "--prompt", "Now is", "--max-new-tokens", "20", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first  # seeded

    greedy = ["generate", str(run), "--prompt", "Now", "--max-new-tokens", "40", "--greedy"]
    assert main(greedy) == 0
    cached = capsys.readouterr().out
    assert main(greedy + ["--no-cache"]) == 0
    assert capsys.readouterr().out == cached

    assert main(["evaluate", str(run), "--lengths", "16,32,128,256"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["length", "loss", "perplexity"]
    assert len(table) == 5 and "past the model's limit of 128" in table[4]


def test_resume_from_the_command_line(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(tiny_run_args(corpus, run, steps=2, eval_interval=2)) == 0
    assert main(tiny_run_args(corpus, run, steps=2, eval_interval=2)) == 2
    assert "add --resume" in capsys.readouterr().err
    assert main(tiny_run_args(corpus, run, steps=4, eval_interval=2) + ["--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert (run / "checkpoints" / "step-00000004").is_dir()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "--data", "no/such/file.txt", "--out", "x"], "data 'no/such/file.txt' not found"),
        (["train", "--n-head", "5", "--out", "x"], "must be divisible by n_head (5)"),
        (["train", "--preset", "gigantic", "--out", "x"], "invalid choice: 'gigantic'"),
        (["info", "no/such/run"], "run 'no/such/run' not found"),
        (["generate", "no/such/run"], "run 'no/such/run' not found"),
    ],
)
def test_mistakes_get_one_line(argv, words, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_flags_are_usage_errors(capsys):
    assert main(["train", "--out", "x", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus" in err and len(err.strip().splitlines()) == 1


def test_two_processes_equal_one_process_on_the_combined_batch(corpus, tmp_path):
    """torchrun with 2 gloo processes and batch 2 each takes the same steps as 1 process with batch 4."""
    single = tmp_path / "single"
    assert main(tiny_run_args(corpus, single, batch_size=4)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "tfa_core.cli", *tiny_run_args(corpus, tmp_path / "ddp", batch_size=2), "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x 2 processes" in result.stdout
    one = load_file(str(single / "checkpoints" / "step-00000003" / "model.safetensors"))
    two = load_file(str(tmp_path / "ddp" / "checkpoints" / "step-00000003" / "model.safetensors"))
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=0, msg=key)
