import json
import math
import warnings
from dataclasses import asdict

import pytest
import torch

import tfa_core.training.checkpoint as checkpoint_module
from tfa_core import create_tokenizer, get_model, load_alibi_config_preset, prepare_causal_lm_dataset
from tfa_core.experiments.evaluation import evaluate_length
from tfa_core.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from tfa_core.training.trainer import (
    Trainer,
    TrainingConfig,
    TrainingDiverged,
    configure_optimizer,
    estimate_loss,
    learning_rate_at,
    train_model,
)

TEXT = ("To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer "
        "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles. ") * 40


@pytest.fixture
def tokenizer():
    return create_tokenizer("character", text=TEXT)


@pytest.fixture
def tokens(tokenizer):
    return torch.tensor(tokenizer.encode(TEXT))


def small_model(tokenizer, dropout=0.1, **changes):
    config = load_alibi_config_preset("character", n_layer=2, n_embd=32, block_size=32, dropout=dropout,
                                      **changes)
    return get_model("FactoredALiBi", config.update_from_tokenizer(tokenizer))


def test_learning_rate_schedule():
    cfg = TrainingConfig(max_steps=110, warmup_steps=10, learning_rate=1e-3, min_learning_rate=1e-4)
    assert learning_rate_at(0, cfg) == pytest.approx(1e-4)
    assert learning_rate_at(9, cfg) == pytest.approx(1e-3)
    assert learning_rate_at(10, cfg) == pytest.approx(1e-3)
    assert learning_rate_at(60, cfg) == pytest.approx(5.5e-4)  # halfway down the cosine
    assert learning_rate_at(110, cfg) == pytest.approx(1e-4)
    assert TrainingConfig(learning_rate=3e-3).min_learning_rate == pytest.approx(3e-4)


@pytest.mark.parametrize("changes, words", [
    (dict(max_steps=0), "max_steps"), (dict(precision="fp16"), "precision"),
    (dict(learning_rate=0), "learning_rate"),
    (dict(block_size=1), "block_size must be an int >= 2"),
    (dict(weight_decay=float("nan")), "weight_decay must be a finite"),
    (dict(grad_clip=float("nan")), "grad_clip must be a finite"),
    (dict(learning_rate=float("inf")), "learning_rate must be a finite"),
    (dict(min_learning_rate=float("nan")), "min_learning_rate must be a finite"),
    (dict(beta2=1.0), "beta2 must be in"),
    (dict(seed=-1), "seed must be an int >= 0"), (dict(checkpoint_interval=0), "checkpoint_interval")])
def test_training_config_errors(changes, words):
    with pytest.raises(ValueError, match=words):
        TrainingConfig(**changes)
    with pytest.raises(TypeError, match="max_steps must be an int"):
        TrainingConfig(max_steps=True)


def test_weight_decay_only_on_linear_weights(tokenizer):
    model = small_model(tokenizer, use_v=True, use_proj=True)
    optimizer = configure_optimizer(model, TrainingConfig(weight_decay=0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in optimizer.param_groups[0]["params"])
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    assert decayed == sorted(n for n in names.values()
                             if n.endswith(("c_attn.weight", "c_fc.weight", "c_proj.weight")))
    assert len(optimizer.param_groups[1]["params"]) + len(decayed) == len(names)
    everything = configure_optimizer(model, TrainingConfig(decay_all=True))
    assert len(everything.param_groups[0]["params"]) == len(names)


def test_trainer_loss_falls_and_history_is_written(tokenizer, tokens, tmp_path):
    model = small_model(tokenizer, dropout=0.0)
    records = []
    cfg = TrainingConfig(max_steps=60, batch_size=8, learning_rate=3e-3, warmup_steps=5, eval_interval=30,
                         eval_tokens=512, log_interval=10, out_dir=str(tmp_path), progress=False)
    history = Trainer(model, tokens[:2000], tokens[2000:], cfg, tokenizer=tokenizer,
                      callbacks=[records.append]).fit()
    train = [r["loss"] for r in history if r["kind"] == "train"]
    assert train[0] > 2.5 and train[-1] < train[0] - 0.4
    evals = [r["val_loss"] for r in history if r["kind"] == "eval"]
    assert evals[1] < evals[0]
    assert [r["step"] for r in history if r["kind"] == "eval"] == [30, 60]
    assert records == history
    on_disk = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert on_disk == history
    assert latest_checkpoint(tmp_path).name == "step-00000060"


def test_resume_continues_exactly(tokenizer, tokens, tmp_path):
    """20 steps in one go equal 10 steps, a fresh process-like restart, and 10 more."""
    cfg = dict(max_steps=20, batch_size=4, eval_interval=5, eval_tokens=128, log_interval=5, progress=False)

    torch.manual_seed(0)
    straight = small_model(tokenizer)
    Trainer(straight, tokens, tokens[-500:], TrainingConfig(**cfg, out_dir=str(tmp_path / "a")),
            tokenizer=tokenizer).fit()

    torch.manual_seed(0)
    first = small_model(tokenizer)
    Trainer(first, tokens, tokens[-500:], TrainingConfig(**cfg, out_dir=str(tmp_path / "b")),
            tokenizer=tokenizer).fit(until_step=10)
    torch.manual_seed(999)  # a new process would start with other random state
    resumed = small_model(tokenizer)
    trainer = Trainer(resumed, tokens, tokens[-500:], TrainingConfig(**cfg, out_dir=str(tmp_path / "b")),
                      tokenizer=tokenizer, resume=True)
    assert trainer.step == 10
    trainer.fit()
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "history.jsonl").read_text().splitlines()]
    assert steps == [5, 5, 10, 10, 15, 15, 20, 20]  # train and eval records, none repeated


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tokenizer, tokens, tmp_path):
    model = small_model(tokenizer)

    def poison(record):
        if record["kind"] == "train" and record["step"] == 12:
            with torch.no_grad():
                model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("inf")

    cfg = TrainingConfig(max_steps=30, batch_size=4, eval_interval=10, eval_tokens=128, log_interval=1,
                         out_dir=str(tmp_path), progress=False)
    with pytest.raises(TrainingDiverged,
                       match=r"stopped at step 12: .*last good checkpoint is .*step-00000010 \(step 10\)"):
        Trainer(model, tokens, tokens[-500:], cfg, tokenizer=tokenizer, callbacks=[poison]).fit()
    saved = load_checkpoint(tmp_path)
    assert saved.step == 10
    assert all(torch.isfinite(p).all() for p in saved.model.parameters())


def test_checkpoint_round_trip_and_refusals(tokenizer, tmp_path):
    model = small_model(tokenizer, use_v=True)
    model.transformer.h[1].attn.alibi_slopes = torch.tensor([1.0, 0.5, 0.25, 0.125])  # its own
    optimizer = configure_optimizer(model, TrainingConfig())
    x = torch.randint(0, tokenizer.vocab_size, (2, 16))
    model(x, labels=x)["loss"].backward()
    optimizer.step()
    path = save_checkpoint(tmp_path, model, 7, optimizer=optimizer, tokenizer=tokenizer)
    assert sorted(p.name for p in path.iterdir()) == ["SHA256SUMS", "model.safetensors",
                                                      "optimizer.safetensors", "state.json"]
    loaded = load_checkpoint(tmp_path, config=model.config, tokenizer=tokenizer)
    assert loaded.step == 7 and loaded.tokenizer == tokenizer
    for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(a, b)
    fresh = configure_optimizer(loaded.model, TrainingConfig())
    fresh.load_state_dict(loaded.optimizer_state)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"],
                       optimizer.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match="n_layer: checkpoint has 2, you asked for 3"):
        load_checkpoint(tmp_path, config=model.config.copy(n_layer=3))
    with pytest.raises(ValueError, match="another tokenizer"):
        load_checkpoint(tmp_path, tokenizer=create_tokenizer("character", text="abc"))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_crash_mid_save_keeps_the_previous_checkpoint(tokenizer, tmp_path, monkeypatch):
    model = small_model(tokenizer)
    save_checkpoint(tmp_path, model, 1, tokenizer=tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, model, 2, tokenizer=tokenizer)
    assert latest_checkpoint(tmp_path).name == "step-00000001"
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()] == ["step-00000001"]
    for key, value in load_checkpoint(tmp_path).model.state_dict().items():
        assert torch.equal(value, before[key])


def test_damaged_checkpoint_is_refused_clearly(tokenizer, tmp_path):
    path = save_checkpoint(tmp_path, small_model(tokenizer), 1)
    (path / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        load_checkpoint(path)


def test_bf16_autocast_path_runs_on_cpu(tokenizer, tokens):
    model = small_model(tokenizer)
    cfg = TrainingConfig(max_steps=3, batch_size=2, precision="bf16", eval_interval=3, eval_tokens=64,
                         progress=False)
    trainer = Trainer(model, tokens, tokens[-300:], cfg)
    assert trainer.uses_bf16
    history = trainer.fit()
    assert math.isfinite(history[-1]["val_loss"])


def test_gradient_accumulation_equals_one_big_batch(tokenizer, tokens):
    """Two micro-batches of 4 take the same step as one batch of the same 8 windows."""
    a, b = small_model(tokenizer, dropout=0.0), small_model(tokenizer, dropout=0.0)
    b.load_state_dict(a.state_dict())
    windows = tokens[:8 * 32].view(8, 32)
    common = dict(max_steps=1, eval_interval=100, progress=False)
    whole = Trainer(a, tokens, None, TrainingConfig(batch_size=8, **common))
    whole.next_batch = lambda: windows
    whole.fit()
    halves = iter([windows[:4], windows[4:]])
    split = Trainer(b, tokens, None, TrainingConfig(batch_size=4, grad_accum_steps=2, **common))
    split.next_batch = lambda: next(halves)
    split.fit()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.equal(a.transformer.wte.weight, small_model(tokenizer).transformer.wte.weight)


def test_estimate_loss_and_the_tutorial_loop(tokenizer, tokens):
    model = small_model(tokenizer, dropout=0.0)
    before = estimate_loss(model, tokens, 32, batch_size=8, tokens_scored=512)
    assert before == estimate_loss(model, tokens, 32, batch_size=8, tokens_scored=512)  # deterministic
    loader = prepare_causal_lm_dataset(TEXT, tokenizer, block_size=32, batch_size=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = train_model(model, loader, optimizer, "cpu", num_epochs=2, log_interval=5)
    assert len(losses) == 2 and losses[1] < losses[0]
    assert estimate_loss(model, tokens, 32, batch_size=8, tokens_scored=512) < before - 0.5
    with pytest.raises(ValueError, match="a window of 32 needs at least 32 scored targets"):
        estimate_loss(model, tokens[:10], 32)


def test_validation_scores_a_fixed_slice_whatever_the_batch_size(tokenizer, tokens):
    """The trainer's validation loss is evaluate_length at block_size on the first eval_tokens targets
    of the validation split: the same number for any batch size."""
    model = small_model(tokenizer, dropout=0.0)
    val = tokens[2000:]
    expected = evaluate_length(model, val, 32, "non_overlapping", tokens_scored=1000)
    assert expected.tokens_scored == 1000  # 31 windows of 32 and one of 8
    for batch_size in (1, 4, 32):
        config = TrainingConfig(batch_size=batch_size, eval_tokens=1000, progress=False)
        trainer = Trainer(model, tokens[:2000], val, config)
        assert trainer.evaluate() == pytest.approx(expected.loss, abs=1e-6)
    # eval_tokens past the split's end: all of it
    whole = Trainer(model, tokens[:2000], val, TrainingConfig(eval_tokens=10 ** 9, progress=False))
    assert whole.eval_tokens == len(val) - 1
    assert whole.evaluate() == pytest.approx(evaluate_length(model, val, 32).loss, abs=1e-6)
    with pytest.raises(ValueError, match="eval_tokens is 16, fewer than one window of block_size 32"):
        Trainer(model, tokens[:2000], val, TrainingConfig(eval_tokens=16, progress=False))


def test_eval_batches_is_retired_with_a_warning_and_old_configs_still_load():
    with pytest.warns(DeprecationWarning, match="eval_batches=10 is no longer used.*pass eval_tokens"):
        config = TrainingConfig(eval_batches=10)
    assert config.eval_tokens == 32_768
    old = asdict(TrainingConfig())
    old["eval_batches"] = 20  # what checkpoints written before eval_tokens hold
    del old["eval_tokens"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = TrainingConfig.from_dict(old)
    assert loaded.eval_tokens == 32_768 and loaded.eval_batches is None
    with pytest.raises(ValueError, match="eval_tokens must be an int >= 1"):
        TrainingConfig(eval_tokens=0)


def test_a_new_checkpoint_records_no_eval_batches(tokenizer, tokens, tmp_path):
    with pytest.warns(DeprecationWarning, match="eval_batches=10 is no longer used"):
        cfg = TrainingConfig(max_steps=2, batch_size=2, eval_interval=2, eval_tokens=64, eval_batches=10,
                             out_dir=str(tmp_path), progress=False)
    Trainer(small_model(tokenizer), tokens, tokens[-300:], cfg, tokenizer=tokenizer).fit()
    state = json.loads((latest_checkpoint(tmp_path) / "state.json").read_text())
    saved = state["extra"]["training"]
    assert "eval_batches" not in saved and saved["eval_tokens"] == 64
    assert saved == {name: value for name, value in asdict(cfg).items() if name != "eval_batches"}


def test_a_nan_validation_loss_is_divergence_and_nothing_is_saved(tokenizer, tokens, tmp_path, monkeypatch):
    cfg = TrainingConfig(max_steps=4, batch_size=2, eval_interval=2, eval_tokens=64, out_dir=str(tmp_path),
                         progress=False)
    trainer = Trainer(small_model(tokenizer), tokens, tokens[-300:], cfg, tokenizer=tokenizer)
    calls = iter([2.5, float("nan")])
    monkeypatch.setattr(trainer, "evaluate", lambda: next(calls))
    with pytest.raises(TrainingDiverged,
                       match=r"validation loss is nan.*last good checkpoint is .*step-00000002"):
        trainer.fit()
    assert latest_checkpoint(tmp_path).name == "step-00000002"
    assert not (tmp_path / "checkpoints" / "step-00000004").exists()


def test_weights_that_are_not_finite_are_never_saved(tokenizer, tokens, tmp_path):
    model = small_model(tokenizer)

    def poison(record):
        if record["kind"] == "train" and record["step"] == 4:
            with torch.no_grad():
                model.transformer.wte.weight[0, 0] = float("nan")

    cfg = TrainingConfig(max_steps=6, batch_size=2, eval_interval=2, eval_tokens=64, log_interval=1,
                         out_dir=str(tmp_path), progress=False)
    trainer = Trainer(model, tokens, None, cfg, tokenizer=tokenizer, callbacks=[poison])
    with pytest.raises(TrainingDiverged, match=r"wte.weight holds NaN.*no checkpoint was written; "
                                               r"the last good checkpoint is .*step-00000002"):
        trainer.fit()
    assert latest_checkpoint(tmp_path).name == "step-00000002"
    with pytest.raises(ValueError, match="not saving step 4: the weight transformer.wte.weight holds NaN"):
        save_checkpoint(tmp_path, model, 4)


def test_resume_true_never_starts_over_in_a_folder_that_holds_a_run(tokenizer, tokens, tmp_path):
    (tmp_path / "history.jsonl").write_text('{"kind": "train", "step": 10, "loss": 2.0}\n')
    cfg = TrainingConfig(max_steps=3, batch_size=2, out_dir=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="holds a run but no intact checkpoint"):
        Trainer(small_model(tokenizer), tokens, None, cfg, tokenizer=tokenizer, resume=True)
    empty = TrainingConfig(max_steps=3, batch_size=2, out_dir=str(tmp_path / "empty"), progress=False)
    assert Trainer(small_model(tokenizer), tokens, None, empty, tokenizer=tokenizer, resume=True).step == 0


def test_splits_shorter_than_a_window_are_refused_before_training(tokenizer, tokens):
    with pytest.raises(ValueError, match="val_tokens holds 20 tokens, fewer than one window of 33"):
        Trainer(small_model(tokenizer), tokens, tokens[:20], TrainingConfig(progress=False))
    with pytest.raises(ValueError, match="train_tokens holds 10 tokens"):
        Trainer(small_model(tokenizer), tokens[:10], None, TrainingConfig(progress=False))


def test_history_reading_tolerates_damage_and_rewrites_atomically(tmp_path, monkeypatch):
    from tfa_core.training.checkpoint import read_history, write_history

    path = tmp_path / "history.jsonl"
    path.write_text('{"kind": "train", "step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n[1]\n'
                    '{"kind": "eval", "step": 2, "val_loss": 1.5}\n{"kind": "train", "st')
    records, problems = read_history(path)
    assert [r["step"] for r in records] == [1, 2]
    assert problems == ["history.jsonl line 2: not a history record, dropped",
                        "history.jsonl line 3: not a history record, dropped",
                        "history.jsonl line 5: a torn last line (a crash mid-write), dropped"]
    before = path.read_text()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_history(path, records)
    assert path.read_text() == before  # the old history, whole
    monkeypatch.undo()
    write_history(path, records)
    assert read_history(path) == (records, [])


def test_checkpoints_honour_the_users_umask(tokenizer, tmp_path):
    """A group sharing the storage can read a run (issue #19): folders and files follow the umask,
    where tempfile.mkdtemp used to make every checkpoint folder 0700."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "run", small_model(tokenizer), 3, tokenizer=tokenizer)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert {stat.S_IMODE(f.stat().st_mode) for f in path.iterdir()} == {0o644}
    assert load_checkpoint(tmp_path / "run").step == 3


def test_compiled_training_on_a_cpu_takes_the_steps_eager_training_takes(tokenizer, tokens):
    """``TrainingConfig(compile=True)`` on a CPU: Inductor builds C++ kernels, and two steps give the
    losses and weights of two eager steps."""
    from tfa_core.training import trainer as trainer_module

    if not trainer_module.has_cpp_compiler():
        pytest.skip("no C++ compiler here for Inductor")
    results = []
    for compile_ in (False, True):
        torch.manual_seed(0)
        model = small_model(tokenizer, dropout=0.0)
        trainer = Trainer(model, tokens, None, TrainingConfig(max_steps=2, batch_size=4, warmup_steps=1,
                                                              compile=compile_, progress=False, seed=0))
        losses = [trainer.train_step()[0] for _ in range(2)]
        results.append((losses, [p.detach().clone() for p in model.parameters()]))
    (eager_losses, eager_weights), (compiled_losses, compiled_weights) = results
    assert compiled_losses == pytest.approx(eager_losses, abs=1e-5)
    for eager, compiled in zip(eager_weights, compiled_weights):
        torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)


def test_compile_on_a_cpu_without_a_cpp_compiler_says_why(tokenizer, tokens, monkeypatch):
    from tfa_core.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module.shutil, "which", lambda name: None)
    model = small_model(tokenizer)
    with pytest.warns(RuntimeWarning, match="needs a C\\+\\+ compiler .* training runs uncompiled"):
        trainer = Trainer(model, tokens, None, TrainingConfig(max_steps=1, batch_size=2, compile=True,
                                                              progress=False))
    assert trainer.forward is model
    trainer.fit()
    assert trainer.step == 1
