import csv
import json
import math
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
            "--eval-interval", str(eval_interval or steps), "--dropout", "0",
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
    # the validation split: the last 10% of 4,680 characters; every length scores all its 467 targets
    assert table[0] == ("scoring the same 467 tokens at every length: the first of the validation split "
                        "(468 tokens)")
    assert table[1].split() == ["length", "mode", "loss", "perplexity", "tokens", "scored"]
    assert [line.split()[0] for line in table[2:]] == ["16", "32", "128", "256"]
    assert [line.split()[4] for line in table[2:5]] == ["467", "467", "467"]
    assert len(table) == 6 and "past the model's limit of 128" in table[5]


def test_evaluate_writes_json_and_csv_and_matches_the_runs_validation(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(tiny_run_args(corpus, run, steps=2) + ["--eval-tokens", "320"]) == 0
    val_loss = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()][-1]["val_loss"]
    capsys.readouterr()
    # the defaults: the run's block size, non-overlapping windows, the run's eval_tokens
    assert main(["evaluate", str(run), "--json", str(tmp_path / "one.json")]) == 0
    report = json.loads((tmp_path / "one.json").read_text())
    assert report["tokens_scored"] == 320 and report["step"] == 2 and len(report["results"]) == 1
    assert report["results"][0]["loss"] == pytest.approx(val_loss, abs=1e-6)  # the trainer's number

    argv = ["evaluate", str(run), "--lengths", "16,32,64", "--mode", "both", "--tokens", "256",
            "--batch-size", "3", "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "scoring the same 256 tokens at every length" in out and f"wrote {tmp_path / 'r.csv'}" in out
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [(r["length"], r["mode"], r["stride"]) for r in rows] == [
        (16, "non_overlapping", 16), (16, "sliding", 8), (32, "non_overlapping", 32), (32, "sliding", 16),
        (64, "non_overlapping", 64), (64, "sliding", 32)]
    assert [r["tokens_scored"] for r in rows] == [256] * 6
    assert math.isfinite(rows[0]["loss"])
    assert rows[0]["perplexity"] == pytest.approx(math.exp(rows[0]["loss"]))
    with open(tmp_path / "r.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [(int(r["length"]), r["mode"]) for r in table] == [(r["length"], r["mode"]) for r in rows]
    assert [float(r["loss"]) for r in table] == pytest.approx([r["loss"] for r in rows], abs=1e-12)

    assert main(["evaluate", str(run), "--lengths", "32,100", "--tokens", "64",
                 "--json", str(tmp_path / "short.json")]) == 0
    assert "longer than the 64 tokens scored; raise --tokens" in capsys.readouterr().out
    rows = json.loads((tmp_path / "short.json").read_text())["results"]
    assert rows[1]["loss"] is None and rows[1]["tokens_scored"] == 0


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
    # validation scores all 467 validation targets (15 windows of 32: 8 on one process, 7 on the other)
    # and adds up the sums: the number one process with twice the batch reports
    one_val, two_val = (json.loads((run / "history.jsonl").read_text().splitlines()[-1])["val_loss"]
                        for run in (single, tmp_path / "ddp"))
    assert two_val == pytest.approx(one_val, abs=1e-5)
    one = load_file(str(single / "checkpoints" / "step-00000003" / "model.safetensors"))
    two = load_file(str(tmp_path / "ddp" / "checkpoints" / "step-00000003" / "model.safetensors"))
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=0, msg=key)
