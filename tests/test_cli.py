import csv
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tfa_core.cli import main
from tfa_core.data.corpus import remove_markdown

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
    assert len(table) == 6 and "(cannot run 256 tokens: max_position_embeddings is 128)" in table[5]


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


# -- the user's data: left as it is, recorded, read again (issue #19) ---------------------------

PYTHON = ("class Shape:\n    def __init__(self, *args, **kwargs):  \n        self.__dict__.update(**kwargs)\n"
          "## a comment, not a heading\n") * 60


def recorded_data(run):
    from tfa_core.training.checkpoint import load_checkpoint

    return load_checkpoint(run, training_state=False).extra["data"]


def test_python_source_trains_as_it_is(tmp_path, capsys):
    source = tmp_path / "shape.py"
    source.write_text(PYTHON)
    assert main(tiny_run_args(source, tmp_path / "run", steps=1)) == 0
    assert "Markdown" not in capsys.readouterr().out
    data = recorded_data(tmp_path / "run")
    # the hash of the text trained on is the hash of the file's bytes: nothing was rewritten
    assert data == {"source": str(source.resolve()), "strip_markdown": False, "tokenizer": "character",
                    "val_fraction": 0.1, "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    from tfa_core.training.checkpoint import load_checkpoint

    tokenizer = load_checkpoint(tmp_path / "run", training_state=False).tokenizer
    assert "".join(tokenizer.characters) == "".join(sorted(set(PYTHON)))  # '*', '_' and '#' are in

    # --strip-markdown, asked for, says how much it removed and records the stripped text's hash
    assert main(tiny_run_args(source, tmp_path / "stripped", steps=1) + ["--strip-markdown"]) == 0
    plain = remove_markdown(PYTHON)
    assert (f"Markdown stripping removed {len(PYTHON) - len(plain):,} characters from {source.resolve()}"
            in capsys.readouterr().out)
    assert recorded_data(tmp_path / "stripped")["sha256"] == hashlib.sha256(plain.encode()).hexdigest()


def test_a_folder_of_source_files_trains_and_says_what_it_read(tmp_path, capsys):
    folder = tmp_path / "project"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "shape.py").write_text(PYTHON)
    (folder / "notes.txt").write_text(TEXT)
    (folder / "pkg" / "shape.cpython-311.pyc").write_bytes(b"\xa7\r\r\n\x00\x00\x00\x00" * 40)
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert main(tiny_run_args(folder, tmp_path / "run", steps=1)) == 0
    assert (f"read 2 text file(s) from {folder.resolve()}; skipped 1: pkg/shape.cpython-311.pyc: binary; "
            "left out 1 hidden: .git") in capsys.readouterr().out
    joined = TEXT.rstrip("\n") + "\n\n" + PYTHON  # sorted: notes.txt, then pkg/shape.py
    assert recorded_data(tmp_path / "run")["sha256"] == hashlib.sha256(joined.encode()).hexdigest()


def test_resume_honours_data_and_checks_its_hash(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(tiny_run_args(corpus, run, steps=2, eval_interval=2)) == 0
    recorded = recorded_data(run)["sha256"]
    # the same text at another path: honoured, and the new path recorded
    moved = tmp_path / "moved" / "corpus.txt"
    moved.parent.mkdir()
    corpus.rename(moved)
    assert main(tiny_run_args(moved, run, steps=3, eval_interval=2) + ["--resume"]) == 0
    assert f"the run's text (same SHA-256) is now read from {moved}" in capsys.readouterr().out
    assert (recorded_data(run)["source"], recorded_data(run)["sha256"]) == (str(moved), recorded)
    # another text: refused, both hashes named, nothing written
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper())
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert main(tiny_run_args(other, run, steps=4, eval_interval=2) + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert (f"{other} is not the text this run was trained on: its SHA-256 is "
            f"{hashlib.sha256(TEXT.upper().encode()).hexdigest()}, the run recorded {recorded}; give --data "
            f"with the original text (the run read it from {moved}), or start a new run") in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    # no --data: the recorded absolute path is read and checked, from any working directory
    moved.write_text(TEXT + "an edit\n")
    resume = ["train", "--resume", "--steps", "4", "--no-progress", "--out", str(run)]
    assert main(resume) == 2
    assert f"{moved} is not the text this run was trained on" in capsys.readouterr().err
    moved.write_text(TEXT)
    assert main(resume) == 0
    assert (run / "checkpoints" / "step-00000004").is_dir()


def evaluation_table(argv, capsys):
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_evaluate_from_another_directory_reads_the_recorded_path(tmp_path, capsys, monkeypatch):
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    Path("corpus.txt").write_text(TEXT)
    assert main(tiny_run_args("corpus.txt", "run", steps=1)) == 0  # a relative --data
    capsys.readouterr()
    here = evaluation_table(["evaluate", "run", "--lengths", "16,32"], capsys)
    monkeypatch.chdir(tmp_path / "elsewhere")
    run = str(tmp_path / "here" / "run")
    assert evaluation_table(["evaluate", run, "--lengths", "16,32"], capsys) == here
    assert len(here.splitlines()) == 4 and "-" not in here.splitlines()[2]  # setup, header, 16, 32
    # the recorded text changed: refused with both hashes
    (tmp_path / "here" / "corpus.txt").write_text(TEXT.replace("York", "Yorc"))
    assert main(["evaluate", run]) == 2
    err = capsys.readouterr().err
    assert "is not the text this run was trained on: its SHA-256 is" in err and "the run recorded" in err
    # --data: any text the tokenizer covers, all of it, no hash check
    Path("other.txt").write_text(TEXT.replace("York", "Yorc")[:120])  # a validation split would be 12
    whole = evaluation_table(["evaluate", run, "--data", "other.txt", "--lengths", "32,120"], capsys)
    rows = [line.split() for line in whole.splitlines()]
    assert "the first of the text of --data (120 tokens)" in whole.splitlines()[0]
    assert rows[2][0] == "32" and float(rows[2][2]) > 0
    assert "longer than the 119 tokens scored" in whole.splitlines()[3]
    Path("odd.txt").write_text("Ça va? " * 40)
    assert main(["evaluate", run, "--data", "odd.txt"]) == 2
    assert (f"{Path('odd.txt').resolve()} has 3 character(s) the run's character tokenizer never saw "
            "('?', 'v', 'Ç')") in capsys.readouterr().err


def test_a_run_from_before_the_hash_still_resumes_and_evaluates(corpus, tmp_path, capsys, monkeypatch):
    """Runs written before this change recorded the path as typed and no SHA-256."""
    monkeypatch.chdir(corpus.parent)
    run = api_run(corpus, tmp_path / "old", extra={"data": {
        "source": corpus.name, "strip_markdown": True, "tokenizer": "character", "val_fraction": 0.1}})
    assert main(["evaluate", str(run), "--lengths", "32"]) == 0
    out, err = capsys.readouterr()
    assert "recorded no SHA-256 of its text" in err and len(out.splitlines()) == 3
    assert main(["train", "--resume", "--steps", "2", "--no-progress", "--out", str(run)]) == 0
    assert "recorded no SHA-256 of its text" in capsys.readouterr().out
    assert recorded_data(run)["sha256"] == hashlib.sha256(remove_markdown(TEXT).encode()).hexdigest()
    assert recorded_data(run)["source"] == str(corpus.resolve())


def api_run(corpus, out, extra=None):
    """A run trained through the API: Trainer(...).fit(), no data description unless ``extra`` has one."""
    from tfa_core import GPTConfigALiBi, Trainer, TrainingConfig, create_tokenizer, get_model

    text = corpus.read_text()
    tokenizer = create_tokenizer("character", text=text)
    tokens = torch.tensor(tokenizer.encode(text))
    config = GPTConfigALiBi(n_layer=1, n_head=2, n_embd=16, block_size=32, dropout=0.0)
    config.update_from_tokenizer(tokenizer)
    torch.manual_seed(0)
    model = get_model("FactoredALiBi", config)
    training = TrainingConfig(max_steps=1, batch_size=2, warmup_steps=1, eval_interval=1, eval_tokens=256,
                              out_dir=str(out), progress=False)
    Trainer(model, tokens[:4000], tokens[4000:], training, tokenizer=tokenizer, extra=extra).fit()
    return out


def test_a_run_made_through_the_api_evaluates_from_the_command_line(corpus, tmp_path, capsys):
    run = api_run(corpus, tmp_path / "api")
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "records no training data: this run was trained through the API; give --data FILE" in err
    assert "KeyError" not in err and len(err.strip().splitlines()) == 1
    table = evaluation_table(["evaluate", str(run), "--data", str(corpus), "--lengths", "16,32"], capsys)
    assert [line.split()[0] for line in table.splitlines()] == ["scoring", "length", "16", "32"]
    assert main(["info", str(run)]) == 0
    assert "data        not recorded: trained through the API (tfa evaluate needs --data FILE)" in (
        capsys.readouterr().out)
