"""The Trainer with batches of your own, callbacks on rank 0 only with the loss averaged over processes,
and the CSV and TensorBoard loggers (issue #19)."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from tfa_core import CSVLogger, GPTConfigALiBi, TensorBoardLogger, Trainer, TrainingConfig, get_model
from tfa_core.data.corpus import TokenWindowDataset
from tfa_core.training.trainer import estimate_loss

VOCAB = 20


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = GPTConfigALiBi(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=VOCAB, dropout=0.0)
    return get_model("FactoredALiBi", config)


def patterned_tokens(n=3000, seed=0):
    """A stream with structure to learn: runs of counting up, from random starting points."""
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, VOCAB, (n // 10,), generator=generator)
    return ((starts[:, None] + torch.arange(10)[None, :]) % VOCAB).flatten()


def settings(**changes):
    return TrainingConfig(**{**dict(max_steps=4, batch_size=4, warmup_steps=1, learning_rate=3e-3,
                                    eval_interval=100, log_interval=1, progress=False, device="cpu"),
                             **changes})


class CountingLoader:
    """A DataLoader that counts how often the trainer starts it."""

    def __init__(self, loader):
        self.loader, self.starts = loader, 0

    def __iter__(self):
        self.starts += 1
        return iter(self.loader)


# -- batches of your own ---------------------------------------------------------------------------

def test_a_dataloader_over_token_windows_trains_and_cycles():
    tokens = patterned_tokens()
    train, val = tokens[:2500], tokens[2500:]
    windows = TokenWindowDataset(train, block_size=16)  # 156 windows
    loader = CountingLoader(DataLoader(windows, batch_size=32, shuffle=True, drop_last=True,
                                       generator=torch.Generator().manual_seed(0)))  # 4 batches a pass
    model = tiny_model()
    before = estimate_loss(model, val, 16, batch_size=8)
    trainer = Trainer(model, loader, val, settings(max_steps=30))
    history = trainer.fit()
    assert loader.starts == 8  # 30 steps of 4 batches a pass: started 8 times (the 8th pass takes 2)
    assert trainer.step_tokens == 32 * 16
    losses = [r["loss"] for r in history if r["kind"] == "train"]
    assert len(losses) == 30 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    assert estimate_loss(model, val, 16, batch_size=8) < before - 0.5  # on text it never trained on


def test_tensor_batches_and_dict_batches_take_the_same_steps():
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, VOCAB, (3, 12), generator=generator) for _ in range(3)]
    dicts = [{"input_ids": b, "labels": b.clone()} for b in batches]
    masked = [{"input_ids": b, "labels": b.masked_fill(torch.arange(12) < 6, -100)} for b in batches]
    weights = []
    for data in (batches, dicts, masked):
        model = tiny_model()
        Trainer(model, data, None, settings(max_steps=3)).fit()
        weights.append(model.transformer.wte.weight.detach())
    assert torch.equal(weights[0], weights[1])
    assert not torch.allclose(weights[0], weights[2])  # the -100 labels were ignored: another step


def test_gradient_accumulation_takes_one_batch_per_micro_step():
    batches = [torch.full((2, 8), i) for i in range(5)]
    trainer = Trainer(tiny_model(), batches, None, settings(max_steps=3, grad_accum_steps=2))
    seen = []
    given = trainer.next_batch

    def recording_next_batch():
        batch = given()
        seen.append(int(batch[0, 0]))
        return batch

    trainer.next_batch = recording_next_batch
    trainer.fit()
    assert seen == [0, 1, 2, 3, 4, 0]  # six micro-steps, the list started again after five
    assert trainer.step_tokens == 2 * 2 * 8


def test_token_lists_and_arrays_are_still_one_stream():
    tokens = patterned_tokens(400)
    for data in (tokens.tolist(), tokens.numpy()):
        trainer = Trainer(tiny_model(), data, None, settings(max_steps=1))
        assert trainer.train_batches is None and trainer.next_batch().shape == (4, 16)


@pytest.mark.parametrize("data, error, words", [
    (torch.zeros(4, 16, dtype=torch.long), ValueError, "must be 1-D .* an iterable of them"),
    (7, TypeError, "a 1-D tensor of token ids or an iterable of batches"),
    ([], ValueError, "yields no batches"),
    ((torch.zeros(2, 8, dtype=torch.long) for _ in range(2)), ValueError, "cannot start again"),
    ([[1.5, 2.5]], TypeError, "a training batch must be"),
], ids=["2-D tensor", "a number", "empty", "a generator runs out", "not a batch"])
def test_batches_the_trainer_cannot_use_are_named(data, error, words):
    with pytest.raises(error, match=words):
        Trainer(tiny_model(), data, None, settings(max_steps=3)).fit()


def test_resuming_with_an_iterable_says_the_order_starts_again(tmp_path):
    batches = [torch.randint(0, VOCAB, (2, 8)) for _ in range(3)]
    Trainer(tiny_model(), batches, None, settings(max_steps=2, out_dir=str(tmp_path))).fit()
    with pytest.warns(UserWarning, match="starts again from its beginning"):
        resumed = Trainer(tiny_model(), batches, None, settings(max_steps=4, out_dir=str(tmp_path)),
                          resume=True)
    assert resumed.step == 2 and "batch order differs" in resumed.notes[-1]


# -- callbacks on rank 0, the loss averaged --------------------------------------------------------

DDP_SCRIPT = """
import json, sys, torch
from tfa_core import GPTConfigALiBi, Trainer, TrainingConfig, get_model
from tfa_core.training.distributed import cleanup_distributed, setup_distributed

out, batch_size = sys.argv[1], int(sys.argv[2])
info = setup_distributed("cpu")
torch.manual_seed(0)
model = get_model("FactoredALiBi", GPTConfigALiBi(n_layer=1, n_head=2, n_embd=16, block_size=16,
                                                   vocab_size=20, dropout=0.0))
tokens = torch.randint(0, 20, (2000,), generator=torch.Generator().manual_seed(1))
config = TrainingConfig(max_steps=3, batch_size=batch_size, warmup_steps=1, log_interval=1, progress=False,
                        device="cpu")
records = []
trainer = Trainer(model, tokens, None, config, callbacks=[records.append], dist_info=info)
own, step = [], trainer.train_step
def recording_step():
    loss, norm = step()
    own.append(loss)
    return loss, norm
trainer.train_step = recording_step
trainer.fit()
with open(f"{out}/rank{info.rank}.json", "w") as handle:
    json.dump({"records": records, "own": own}, handle)
cleanup_distributed()
"""


def test_under_ddp_only_rank_0_logs_and_the_loss_is_the_mean_over_ranks(tmp_path):
    """2 gloo processes with batch 2 each log the loss one process logs with batch 4."""
    script = tmp_path / "ddp_losses.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = subprocess.run([*torchrun, str(script), str(tmp_path), "2"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert two.returncode == 0, two.stderr[-3000:]
    os.makedirs(tmp_path / "single")
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "single"), "4"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    single = json.loads((tmp_path / "single" / "rank0.json").read_text())
    assert rank1["records"] == [] and [r["step"] for r in rank0["records"]] == [1, 2, 3]
    for step, record in enumerate(rank0["records"]):
        halves = (rank0["own"][step], rank1["own"][step])
        assert abs(halves[0] - halves[1]) > 1e-3  # each rank's own half-batch loss differs ...
        assert record["loss"] == pytest.approx(sum(halves) / 2, abs=1e-12)  # ... the log has their mean
        assert record["loss"] == pytest.approx(single["records"][step]["loss"], abs=1e-5)  # = one process


# -- the loggers -----------------------------------------------------------------------------------

def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_csv_logger_writes_every_record_and_continues_a_resumed_run(tmp_path):
    tokens = patterned_tokens()
    log = tmp_path / "log.csv"
    config = settings(max_steps=4, eval_interval=2, eval_tokens=256, out_dir=str(tmp_path / "run"))
    first = Trainer(tiny_model(), tokens, tokens[-200:], config, callbacks=[CSVLogger(log)])
    first.fit()
    rows = read_rows(log)
    assert rows[0] == list(CSVLogger.COLUMNS)
    assert [(r[0], int(r[1])) for r in rows[1:]] == [("train", 1), ("train", 2), ("eval", 2), ("train", 3),
                                                     ("train", 4), ("eval", 4)]
    assert [float(r[2]) for r in rows[1:] if r[0] == "train"] == [
        h["loss"] for h in first.history if h["kind"] == "train"]  # the numbers exactly, not rounded
    assert rows[3][2] == "" and float(rows[3][3]) == first.history[2]["val_loss"]

    # a crash lost step 4's checkpoint: the run resumes from step 2 and logs steps 3 and 4 again
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-00000004")
    resumed = Trainer(tiny_model(), tokens, tokens[-200:], config, callbacks=[CSVLogger(log)], resume=True)
    assert resumed.step == 2
    resumed.fit()
    again = read_rows(log)
    assert [(r[0], int(r[1])) for r in again[1:]] == [(r[0], int(r[1])) for r in rows[1:]]  # no repeats
    assert again[1:4] == rows[1:4]  # the rows before the checkpoint are kept as they were
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [float(r[2]) for r in again[1:] if r[0] == "train"] == [h["loss"] for h in history
                                                                    if h["kind"] == "train"]


def test_csv_logger_never_writes_over_the_log_of_another_run(tmp_path):
    tokens = patterned_tokens()
    log = tmp_path / "log.csv"
    config = settings(max_steps=2, eval_interval=2, eval_tokens=256, out_dir=str(tmp_path / "one"))
    Trainer(tiny_model(), tokens, tokens[-200:], config, callbacks=[CSVLogger(log)]).fit()
    before = log.read_text()
    assert len(read_rows(log)) == 4  # the header, train 1 and 2, eval 2
    # a fresh run (in another folder, or the same one without resume) is refused as it is made
    for out_dir in ("two", "one"):
        again = settings(max_steps=2, eval_interval=2, eval_tokens=256, out_dir=str(tmp_path / out_dir))
        with pytest.raises(ValueError, match=f"{log}.*another run.*another path, or delete the file"):
            Trainer(tiny_model(), tokens, tokens[-200:], again, callbacks=[CSVLogger(log)])
        assert log.read_text() == before
    with pytest.raises(ValueError, match="another run"):  # records without a Trainer: a fresh run's
        CSVLogger(log)({"kind": "train", "step": 1, "loss": 2.0})
    assert log.read_text() == before
    header_only = tmp_path / "header.csv"  # a log that holds no rows yet is used
    header_only.write_text(",".join(CSVLogger.COLUMNS) + "\n")
    CSVLogger(header_only)({"kind": "train", "step": 1, "loss": 2.0})
    assert read_rows(header_only)[1][:3] == ["train", "1", "2.0"]


def test_csv_logger_refuses_a_file_of_other_columns(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("epoch,accuracy\n1,0.5\n")
    with pytest.raises(ValueError, match="holds other columns"):
        CSVLogger(other)({"kind": "train", "step": 1, "loss": 2.0})
    assert other.read_text() == "epoch,accuracy\n1,0.5\n"
    with pytest.raises(ValueError, match="must include 'step'"):
        CSVLogger(tmp_path / "x.csv", columns=("kind", "loss"))
    with pytest.raises(ValueError, match="is a folder"):
        CSVLogger(tmp_path)


def test_tensorboard_logger_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were missing
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorBoardLogger(tmp_path)


def test_tensorboard_logger_writes_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path)
    logger({"kind": "train", "step": 3, "loss": 2.5, "lr": 1e-3})
    logger({"kind": "eval", "step": 3, "val_loss": 2.75})
    logger.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(3, 2.5)]
    assert [(e.step, e.value) for e in events.Scalars("eval/val_loss")] == [(3, 2.75)]
