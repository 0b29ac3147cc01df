"""Every mistake the command line can be given, in one table: one line on stderr, exit code 2, and
nothing written (no new folder, the existing run untouched). Then the runs that must never be lost:
``--resume`` continues the newest intact checkpoint or refuses, pruning keeps what it did not write,
and continuing to a longer schedule is announced.

Case ids name the issue they come from (#15 group 3 or 4, or "more" for checks beside the issue's list).
"""

import hashlib
import json
import math

import pytest
import torch

from tfa_core.cli import main
from tfa_core.training.checkpoint import load_checkpoint
from tfa_core import GPTConfigALiBi, create_tokenizer, get_model
from tfa_core.training.trainer import Trainer, TrainingConfig, learning_rate_at

TEXT = "Now is the winter of our discontent made glorious summer by this sun of York.\n" * 60
TINY = ["--n-layer", "1", "--n-embd", "32", "--block-size", "32", "--batch-size", "4", "--eval-tokens", "128",
        "--dropout", "0", "--warmup-steps", "1", "--no-progress"]


def train_args(data, out, steps=2, eval_interval=2, *more):
    return ["train", "--data", str(data), *TINY, "--steps", str(steps), "--eval-interval", str(eval_interval),
            "--out", str(out), *more]


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "corpus.txt").write_text(TEXT)
    # the validation split (30 characters) is shorter than a window
    (root / "short.txt").write_text(TEXT[:300])
    (root / "a-file").write_text("not a folder")
    (root / "odd.txt").write_text("Ça va? " * 40)  # characters the run's tokenizer never saw
    (root / "binaries").mkdir()
    (root / "binaries" / "weights.bin").write_bytes(b"\x00\x01" * 64)
    assert main(train_args(root / "corpus.txt", root / "run")) == 0
    text = TEXT
    tokenizer = create_tokenizer("character", text=text)
    tokens = torch.tensor(tokenizer.encode(text))
    config = GPTConfigALiBi(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=tokenizer.vocab_size)
    training = TrainingConfig(max_steps=1, batch_size=2, warmup_steps=1, eval_interval=1, eval_tokens=256,
                              out_dir=str(root / "api"), progress=False)
    Trainer(get_model("FactoredALiBi", config), tokens[:4000], tokens[4000:], training,
            tokenizer=tokenizer).fit()  # a run made through the API: no data description
    return root


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


NO_CUDA = not torch.cuda.is_available()
NO_MPS = not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())

# (id, argv with {data} {run} {new} {short} {file} placeholders, words expected in the one line)
CASES = [
    # group 3: --model
    ("3-model-unknown", ["train", "--model", "NoSuchModel", "--out", "{new}"],
     "unknown model 'NoSuchModel'; choose one of"),
    # group 4: non-finite and meaningless values
    ("4-weight-decay-nan", ["train", "--weight-decay", "nan", "--out", "{new}"],
     "--weight-decay: must be a finite number"),
    ("4-grad-clip-nan", ["train", "--grad-clip", "nan", "--out", "{new}"],
     "--grad-clip: must be a finite number"),
    ("4-steps-0", ["train", "--steps", "0", "--out", "{new}"], "--steps: must be 1 or more, got 0"),
    ("4-epochs-0", ["train", "--epochs", "0", "--out", "{new}"],
     "--epochs/--num_epochs/--num-epochs: must be more than 0"),
    ("4-epochs-negative", ["train", "--epochs", "-1", "--out", "{new}"], "must be more than 0, got -1"),
    ("4-epochs-inf", ["train", "--epochs", "inf", "--out", "{new}"], "must be a finite number, got inf"),
    ("4-out-empty", ["train", "--out", ""], "--out/--output: needs a folder name"),
    ("4-out-a-file", ["train", "--out", "{file}"], "is a file, not a folder"),
    ("4-out-under-a-file", ["train", "--out", "{file}/run"], "cannot be created"),
    ("4-generate-temperature-nan", ["generate", "{run}", "--temperature", "nan"],
     "--temperature: must be a finite number"),
    ("4-evaluate-batch-size-negative", ["evaluate", "{run}", "--batch-size", "-1"],
     "--batch-size: must be 1 or more"),
    ("4-device-tpu", ["train", "--device", "tpu", "--out", "{new}"], "device 'tpu' is not a device name"),
    pytest.param("4-device-mps-absent", ["train", "--device", "mps", "--out", "{new}"],
                 "'mps' is not available",
                 marks=pytest.mark.skipif(not NO_MPS, reason="this machine has MPS")),
    pytest.param("4-device-cuda-absent", ["generate", "{run}", "--device", "cuda"], "'cuda' is not available",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")),
    ("4-n-embd-huge", ["train", "--data", "{data}", "--n-embd", "1000000", "--n-head", "1", "--out", "{new}"],
     "needs at least"),
    ("4-batch-size-huge",
     ["train", "--data", "{data}", *TINY[:6], "--batch-size", "1000000000", "--out", "{new}"],
     "needs at least"),
    ("4-val-split-shorter-than-a-window", ["train", "--data", "{short}", *TINY, "--out", "{new}"],
     "the validation split of"),
    ("4-block-size-1", ["train", "--block-size", "1", "--out", "{new}"],
     "--block-size/--block_size: must be 2 or more"),
    ("4-flags-with-resume-disagree",
     ["train", "--data", "{data}", "--resume", "--lr", "0.1", "--out", "{run}"],
     "a resumed run keeps its settings, but you gave --lr 0.1 (the run has 0.001)"),
    ("4-model-with-resume-disagrees",
     ["train", "--resume", "--model", "Vanilla", "--n-layer", "3", "--out", "{run}"],
     "--model Vanilla (the run has FactoredALiBi), --n-layer 3 (the run has 1)"),
    ("4-epochs-with-resume", ["train", "--resume", "--epochs", "2", "--out", "{run}"],
     "--epochs (give --steps"),
    ("4-resume-a-finished-run", ["train", "--resume", "--out", "{run}"], "already finished its 2 steps"),
    ("4-resume-steps-not-past", ["train", "--resume", "--steps", "2", "--out", "{run}"],
     "--steps 2 is not past the checkpoint's step 2"),
    # a fresh run into a folder that holds one
    ("2-fresh-run-into-a-run", ["train", "--data", "{data}", "--out", "{run}"],
     "already holds a run; add --resume"),
    # group 2: nothing to resume
    ("2-resume-nothing", ["train", "--resume", "--out", "{new}"], "nothing to resume"),
    # more: every other flag
    ("more-lr-nan", ["train", "--lr", "nan", "--out", "{new}"],
     "--lr/--learning-rate: must be a finite number"),
    ("more-lr-zero", ["train", "--lr", "0", "--out", "{new}"], "must be more than 0"),
    ("more-min-lr-above-lr", ["train", "--lr", "1e-3", "--min-lr", "1e-2", "--out", "{new}"],
     "--min-lr 0.01 is above"),
    ("more-warmup-longer-than-steps", ["train", "--steps", "5", "--warmup-steps", "10", "--out", "{new}"],
     "--warmup-steps 10 is longer than --steps 5"),
    ("more-steps-and-epochs", ["train", "--steps", "5", "--epochs", "1", "--out", "{new}"],
     "--steps or --epochs, not both"),
    ("more-dropout-1", ["train", "--dropout", "1", "--out", "{new}"], "--dropout: must be less than 1"),
    ("more-val-fraction-1", ["train", "--val-fraction", "1", "--out", "{new}"],
     "--val-fraction: must be less than 1"),
    ("more-n-head-not-a-divisor", ["train", "--n-head", "5", "--out", "{new}"],
     "must be divisible by n_head (5)"),
    ("more-grad-accum-0", ["train", "--grad-accum", "0", "--out", "{new}"],
     "--grad-accum: must be 1 or more"),
    ("more-seed-negative", ["train", "--seed", "-1", "--out", "{new}"], "--seed: must be 0 or more"),
    ("more-steps-not-a-number", ["train", "--steps", "ten", "--out", "{new}"],
     "expected a whole number, got 'ten'"),
    ("more-data-missing", ["train", "--data", "no/such/file.txt", "--out", "{new}"], "not found"),
    ("more-top-k-0", ["generate", "{run}", "--top-k", "0"], "--top-k: must be 1 or more"),
    ("more-top-p-0", ["generate", "{run}", "--top-p", "0"], "--top-p: must be more than 0"),
    ("more-max-new-tokens-negative", ["generate", "{run}", "--max-new-tokens", "-1"], "must be 0 or more"),
    ("more-lengths-garbled", ["evaluate", "{run}", "--lengths", "128,abc"],
     "expected comma-separated whole numbers"),
    ("more-evaluate-batch-huge", ["evaluate", "{run}", "--batch-size", "1000000000"], "needs at least"),
    ("more-evaluate-tokens-1", ["evaluate", "{run}", "--tokens", "1"], "--tokens: must be 2 or more, got 1"),
    ("more-evaluate-tokens-past-the-text", ["evaluate", "{run}", "--tokens", "100000"],
     "--tokens 100,000 is more than the 467 the text holds"),
    ("more-evaluate-mode-unknown", ["evaluate", "{run}", "--mode", "strided"], "invalid choice: 'strided'"),
    ("more-evaluate-json-no-folder", ["evaluate", "{run}", "--json", "no/such/folder/r.json"],
     "the folder no/such/folder does not exist"),
    ("more-evaluate-csv-a-folder", ["evaluate", "{run}", "--csv", "{run}"], "needs a file name"),
    ("more-evaluate-max-batches-retired", ["evaluate", "{run}", "--max-batches", "2"],
     "unrecognized arguments: --max-batches"),
    ("more-run-missing", ["info", "{new}"], "not found"),
    ("more-extrapolate-steps-0", ["extrapolate", "--out", "{new}", "--steps", "0"],
     "--steps: must be 1 or more"),
    ("more-unknown-flag", ["train", "--out", "{new}", "--bogus"], "unrecognized arguments: --bogus"),
    # issue #19: the user's data
    ("19-strip-and-keep-markdown", ["train", "--strip-markdown", "--keep-markdown", "--out", "{new}"],
     "argument --keep-markdown: not allowed with argument --strip-markdown"),
    ("19-folder-without-text", ["train", "--data", "{binaries}", "--out", "{new}"],
     "has no text files to read (skipped 1: weights.bin: binary)"),
    ("19-resume-with-other-data",
     ["train", "--resume", "--data", "{short}", "--steps", "4", "--out", "{run}"],
     "is not the text this run was trained on: its SHA-256 is"),
    ("19-resume-strip-disagrees", ["train", "--resume", "--strip-markdown", "--steps", "4", "--out", "{run}"],
     "you gave --strip-markdown (the run keeps Markdown)"),
    ("19-evaluate-unseen-characters", ["evaluate", "{run}", "--data", "{odd}"],
     "has 3 character(s) the run's character tokenizer never saw ('?', 'v', 'Ç')"),
    ("19-evaluate-api-run-without-data", ["evaluate", "{api}"],
     "this run was trained through the API; give --data FILE"),
    ("19-extrapolate-strip-and-keep",
     ["extrapolate", "--out", "{new}", "--strip-markdown", "--keep-markdown"],
     "not allowed with argument --strip-markdown"),
]


def _case_id(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize("name, argv, words", CASES, ids=[_case_id(c) for c in CASES])
def test_every_mistake_is_one_line_and_writes_nothing(name, argv, words, place, capsys):
    fill = {"{data}": str(place / "corpus.txt"), "{run}": str(place / "run"), "{new}": str(place / "new"),
            "{short}": str(place / "short.txt"), "{file}": str(place / "a-file"),
            "{odd}": str(place / "odd.txt"), "{binaries}": str(place / "binaries"),
            "{api}": str(place / "api")}
    argv = [fill.get(a, a).replace("{file}", fill["{file}"]) for a in argv]
    before = snapshot(place / "run")
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (place / "new").exists()  # no work was done
    assert snapshot(place / "run") == before  # the existing run is untouched


def test_the_table_covers_the_issue():
    groups = [_case_id(c).split("-")[0] for c in CASES]
    assert groups.count("4") >= 20 and groups.count("3") >= 1 and groups.count("2") >= 2


# -- --model is honoured ------------------------------------------------------------------------

def test_model_flag_is_honoured(place, capsys):
    out = place / "vanilla"
    assert main(train_args(place / "corpus.txt", out, 2, 2, "--model", "Vanilla")) == 0
    assert capsys.readouterr().out.startswith("Vanilla: ")
    saved = load_checkpoint(out)
    assert saved.config.model_type == "Vanilla" and saved.config.position_scheme == "learned"
    assert type(saved.model).__name__ == "VanillaGPT"


# -- resume: never lost ----------------------------------------------------------------------

def fresh_run(place, name, steps=4, eval_interval=2):
    out = place / name
    assert main(train_args(place / "corpus.txt", out, steps, eval_interval)) == 0
    return out


def test_resume_with_a_broken_latest_resumes_the_newest_intact_checkpoint(place, capsys):
    for broken in ("", None, "../../run/checkpoints/step-00000002"):
        out = fresh_run(place, "broken-latest", steps=2, eval_interval=1)
        pointer = out / "checkpoints" / "latest"
        pointer.unlink() if broken is None else pointer.write_text(broken)
        capsys.readouterr()
        assert main(train_args(place / "corpus.txt", out, 4, 1) + ["--resume"]) == 0
        printed = capsys.readouterr().out
        assert "passed over" in printed and "resuming" in printed and "from step-00000002" in printed
        assert load_checkpoint(out).step == 4
        import shutil

        shutil.rmtree(out)


def test_resume_refuses_when_no_checkpoint_is_intact_and_leaves_the_folder_alone(place, capsys):
    out = fresh_run(place, "all-damaged", steps=2, eval_interval=1)
    for model_file in (out / "checkpoints").glob("step-*/model.safetensors"):
        model_file.write_bytes(b"garbage")
    before = snapshot(out)
    capsys.readouterr()
    assert main(train_args(place / "corpus.txt", out, 4, 1) + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume in" in err and "model.safetensors" in err and len(err.strip().splitlines()) == 1
    assert snapshot(out) == before


def test_pruning_keeps_what_this_run_did_not_write(place, capsys):
    out = fresh_run(place, "prune", steps=2, eval_interval=1)  # writes step-1, step-2
    foreign = out / "checkpoints" / "step-00000000"  # a checkpoint this process never wrote
    import shutil

    shutil.copytree(out / "checkpoints" / "step-00000001", foreign)
    assert main(train_args(place / "corpus.txt", out, 6, 1) + ["--resume"]) == 0
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    # the resumed run wrote 3..6 and keeps its newest two; what it found (0, 1, 2) stays
    assert names == ["latest", "step-00000000", "step-00000001", "step-00000002", "step-00000005",
                     "step-00000006"]


def test_resume_to_a_longer_schedule_is_announced_and_exact(place, capsys):
    out = fresh_run(place, "longer", steps=4, eval_interval=2)
    capsys.readouterr()
    assert main(train_args(place / "corpus.txt", out, 8, 2) + ["--resume"]) == 0
    printed = capsys.readouterr().out
    old = TrainingConfig(max_steps=4, warmup_steps=1, learning_rate=1e-3)
    new = TrainingConfig(max_steps=8, warmup_steps=1, learning_rate=1e-3)
    assert (f"the schedule changes from 4 to 8 steps: the learning rate at step 4 goes from "
            f"{learning_rate_at(4, old):.3g} to {learning_rate_at(4, new):.3g}") in printed
    saved = load_checkpoint(out)
    assert saved.step == 8 and saved.extra["training"]["max_steps"] == 8
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    last_lr = [r["lr"] for r in records if r["kind"] == "train" and r["step"] == 8][0]
    assert math.isclose(last_lr, learning_rate_at(7, new))
    assert learning_rate_at(7, new) != learning_rate_at(7, old)


def test_leftovers_of_interrupted_saves_are_removed(place):
    out = fresh_run(place, "leftovers", steps=2, eval_interval=2)
    leftover = out / "checkpoints" / ".step-00000004-abc123"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half a file")
    (out / "checkpoints" / ".latest.tmp").write_text("step-0000")
    assert main(train_args(place / "corpus.txt", out, 3, 2) + ["--resume"]) == 0
    assert not leftover.exists() and not (out / "checkpoints" / ".latest.tmp").exists()


def test_a_torn_history_does_not_block_resume_or_info(place, capsys):
    out = fresh_run(place, "torn", steps=2, eval_interval=1)
    history = out / "history.jsonl"
    original = history.read_text()
    history.write_text(original + '{"kind": "train", "step": 3, "lo')  # a crash mid-append
    assert main(["info", str(out)]) == 0
    assert "torn last line" in capsys.readouterr().out
    assert main(train_args(place / "corpus.txt", out, 3, 1) + ["--resume"]) == 0
    assert "torn last line" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in history.read_text().splitlines()]
    assert steps == [1, 2, 2, 3, 3]  # eval 1; train and eval 2; then the resumed run's step 3
    assert (out / "history.jsonl.damaged").read_text().endswith('"lo')  # the file as it was is kept
