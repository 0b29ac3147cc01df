"""Damaged, mismatched and planted checkpoint files: each is named in one line, never a traceback.

Every case damages a fresh checkpoint of a tiny model, then checks that ``load_checkpoint`` raises a
``CheckpointError`` naming the file, and (for a sample) that ``tfa generate``/``tfa info`` end with
one line and exit code 2. "(SHA updated)" cases also rewrite SHA256SUMS to match the damage, so the
structural checks behind the checksum are tested too.
"""

import hashlib
import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from tfa_core import create_tokenizer, get_model, load_alibi_config_preset
from tfa_core.cli import main
from tfa_core.training.checkpoint import CheckpointError, find_resumable, load_checkpoint, save_checkpoint
from tfa_core.training.trainer import Trainer, TrainingConfig, configure_optimizer

TEXT = "Now is the winter of our discontent made glorious summer by this sun of York.\n" * 30


def tiny_model(tokenizer, n_embd=32, seed=0):
    torch.manual_seed(seed)
    config = load_alibi_config_preset("character", n_layer=1, n_embd=n_embd, block_size=16, dropout=0.0)
    return get_model("FactoredALiBi", config.update_from_tokenizer(tokenizer))


@pytest.fixture
def tokenizer():
    return create_tokenizer("character", text=TEXT)


def write_run(run, tokenizer, steps=(1,), n_embd=32, seed=0):
    """A run folder as `tfa train` writes it, with one checkpoint per step in ``steps``."""
    model = tiny_model(tokenizer, n_embd, seed)
    optimizer = configure_optimizer(model, TrainingConfig())
    x = torch.tensor([tokenizer.encode(TEXT[:17])])
    model(x, labels=x)["loss"].backward()
    optimizer.step()
    extra = {"data": {"source": "x", "strip_markdown": True, "tokenizer": "character", "val_fraction": 0.1},
             "training": {"max_steps": 10}}
    for step in steps:
        path = save_checkpoint(run, model, step, optimizer=optimizer, tokenizer=tokenizer, extra=extra,
                               keep=10)
    (run / "history.jsonl").write_text("".join(json.dumps({"kind": "train", "step": s, "loss": 3.0}) + "\n"
                                               for s in steps))
    return path


def update_sums(path):
    names = ("model.safetensors", "optimizer.safetensors", "state.json")
    (path / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((path / n).read_bytes()).hexdigest()}  {n}\n" for n in names))


def rewrite_header(file, header_bytes, keep_data=True):
    raw = file.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    data = raw[8 + n:] if keep_data else b""
    file.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes + data)


def edit_state(path, change):
    state = json.loads((path / "state.json").read_text())
    state = change(state)
    (path / "state.json").write_text(json.dumps(state))


def set_config(state, **fields):
    state["config"].update(fields)
    return state


# -- each damage: (name, function(path, run, tokenizer), file named, words) ------------------------

def truncate(path, run, tok):
    f = path / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])


def truncate_sha(path, run, tok):
    truncate(path, run, tok)
    update_sums(path)


def garble(path, run, tok):
    f = path / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = b"\x00" * 64
    f.write_bytes(bytes(raw))


def garble_header_sha(path, run, tok):
    rewrite_header(path / "model.safetensors", b"{not json" + b" " * 50)
    update_sums(path)


def huge_header_sha(path, run, tok):
    f = path / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(struct.pack("<Q", 2 ** 62) + raw[8:])
    update_sums(path)


def offsets_past_end_sha(path, run, tok):
    f = path / "model.safetensors"
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    start, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [start + 10 ** 9, end + 10 ** 9]
    rewrite_header(f, json.dumps(header).encode())
    update_sums(path)


def flip_400_bytes(path, run, tok):
    f = path / "model.safetensors"
    raw = bytearray(f.read_bytes())
    generator = torch.Generator().manual_seed(0)
    (n,) = struct.unpack("<Q", raw[:8])
    for i in torch.randint(8 + n, len(raw), (400,), generator=generator).tolist():
        raw[i] ^= 0x10  # small changes inside the weights: the file still parses
    f.write_bytes(bytes(raw))


def state_is_a_list_sha(path, run, tok):
    (path / "state.json").write_text("[1, 2, 3]")
    update_sums(path)


def config_is_a_string_sha(path, run, tok):
    edit_state(path, lambda s: {**s, "config": "FactoredALiBi"})
    update_sums(path)


def step_is_text_sha(path, run, tok):
    edit_state(path, lambda s: {**s, "step": "ten"})
    update_sums(path)


def bad_rng_sha(path, run, tok):
    edit_state(path, lambda s: {**s, "rng": {"python": [3, "x", None]}})
    update_sums(path)


def bad_tokenizer_sha(path, run, tok):
    edit_state(path, lambda s: {**s, "tokenizer": {"name": "character", "chars": 5}})
    update_sums(path)


def config_disagrees_sha(path, run, tok):
    edit_state(path, lambda s: set_config(s, n_embd=64))
    update_sums(path)


def config_terabytes_sha(path, run, tok):
    edit_state(path, lambda s: set_config(s, n_embd=10 ** 6, n_head=4))
    update_sums(path)


def bad_config_value_sha(path, run, tok):
    edit_state(path, lambda s: set_config(s, n_head=5))
    update_sums(path)


def swapped_model(path, run, tok):
    other = write_run(run.parent / "other", tok, n_embd=32, seed=1)
    (path / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())


def swapped_model_other_shape_sha(path, run, tok):
    other = write_run(run.parent / "other", tok, n_embd=64, seed=1)
    (path / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    update_sums(path)


def swapped_state_other_step_sha(path, run, tok):
    other = write_run(run.parent / "other", tok, steps=(5,))
    (path / "state.json").write_text((other / "state.json").read_text())
    update_sums(path)


def sums_garbled(path, run, tok):
    (path / "SHA256SUMS").write_text("garbage\n")


def sums_missing(path, run, tok):
    (path / "SHA256SUMS").unlink()


def model_missing(path, run, tok):
    (path / "model.safetensors").unlink()


def state_not_json(path, run, tok):
    (path / "state.json").write_text("{not json")
    update_sums(path)


def future_format_sha(path, run, tok):
    edit_state(path, lambda s: {**s, "format_version": 99})
    update_sums(path)


def nan_weights_sha(path, run, tok):
    tensors = load_file(str(path / "model.safetensors"))
    name = next(n for n in sorted(tensors) if tensors[n].dim() == 2)
    tensors[name][0, 0] = float("nan")
    save_file(tensors, str(path / "model.safetensors"))
    update_sums(path)


PLANTED = []


def pickle_planted_sha(path, run, tok):
    import pickle

    marker = run.parent / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    update_sums(path)
    PLANTED.append(marker)


DAMAGE = [
    (truncate, "model.safetensors", "SHA-256"),
    (truncate_sha, "model.safetensors", "truncated"),
    (garble, "model.safetensors", "SHA-256"),
    (garble_header_sha, "model.safetensors", "header is not valid JSON"),
    (huge_header_sha, "model.safetensors", "header claims 4,611,686,018,427,387,904 bytes"),
    (offsets_past_end_sha, "model.safetensors", "offsets past the end"),
    (flip_400_bytes, "model.safetensors", "SHA-256"),
    (state_is_a_list_sha, "state.json", "expected a JSON object"),
    (config_is_a_string_sha, "state.json", "'config' has the wrong type"),
    (step_is_text_sha, "state.json", "'step' has the wrong type"),
    (bad_rng_sha, "state.json", "'rng' does not hold a Python random state"),
    (bad_tokenizer_sha, "state.json", "tokenizer description is invalid"),
    (config_disagrees_sha, "model.safetensors", "does not match the config in state.json"),
    (config_terabytes_sha, "model.safetensors", "does not match the config in state.json"),
    (bad_config_value_sha, "state.json", "its config is invalid"),
    (swapped_model, "model.safetensors", "SHA-256"),
    (swapped_model_other_shape_sha, "model.safetensors", "does not match the config"),
    (swapped_state_other_step_sha, "state.json", "files swapped"),
    (sums_garbled, "SHA256SUMS", "damaged"),
    (sums_missing, "SHA256SUMS", "is missing"),
    (model_missing, "model.safetensors", "is missing"),
    (state_not_json, "state.json", "not valid JSON"),
    (future_format_sha, "state.json", "has format 99"),
    (nan_weights_sha, "model.safetensors", "NaN or infinity"),
    (pickle_planted_sha, "model.safetensors", "damaged"),
]


@pytest.mark.parametrize("damage, file, words", DAMAGE, ids=[d[0].__name__ for d in DAMAGE])
def test_damaged_checkpoint_is_named_in_one_line(damage, file, words, tokenizer, tmp_path, capsys):
    run = tmp_path / "run"
    path = write_run(run, tokenizer)
    damage(path, run, tokenizer)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(run)
    message = str(info.value)
    assert file in message and words in message, message
    assert main(["generate", str(run), "--max-new-tokens", "3"]) == 2
    err = capsys.readouterr().err
    assert file in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()  # a planted pickle never runs


def test_a_config_of_terabytes_is_refused_before_anything_is_allocated(tokenizer, tmp_path):
    import time

    run = tmp_path / "run"
    path = write_run(run, tokenizer)
    config_terabytes_sha(path, run, tokenizer)
    started = time.perf_counter()
    with pytest.raises(CheckpointError):
        load_checkpoint(run)
    assert time.perf_counter() - started < 5


# -- latest ----------------------------------------------------------------------------------

@pytest.mark.parametrize("pointer", ["../../other/checkpoints/step-00000001", "/etc", "", "step-00000009",
                                     "step-1/../../other"])
def test_latest_is_confined_to_its_run(pointer, tokenizer, tmp_path, capsys):
    other = write_run(tmp_path / "other", tokenizer, seed=1)
    run = tmp_path / "runs" / "mine"
    write_run(run, tokenizer)
    (run / "checkpoints" / "latest").write_text(pointer)
    with pytest.raises(CheckpointError, match="latest"):
        load_checkpoint(run)
    assert main(["info", str(run)]) == 2
    err = capsys.readouterr().err
    assert "checkpoints/latest" in err and "step-00000001" in err  # names the way out
    # resuming falls back to the run's own newest intact checkpoint, never the other run's
    saved, skipped = find_resumable(run)
    assert saved.path == run / "checkpoints" / "step-00000001" and "latest" in skipped[0]
    assert other.exists()


# -- commands load only what they need -------------------------------------------------------

def test_generate_and_info_work_when_only_the_optimizer_file_is_damaged(tokenizer, tmp_path, capsys):
    run = tmp_path / "run"
    path = write_run(run, tokenizer)
    f = path / "optimizer.safetensors"
    f.write_bytes(f.read_bytes()[:50])
    assert main(["generate", str(run), "--max-new-tokens", "5", "--seed", "0"]) == 0
    assert main(["info", str(run)]) == 0
    assert "(step 1)" in capsys.readouterr().out
    assert load_checkpoint(run, training_state=False).optimizer_state is None
    with pytest.raises(CheckpointError, match="optimizer.safetensors is damaged"):
        load_checkpoint(run)  # what a resume needs


def test_optimizer_state_that_does_not_fit_is_refused_on_resume(tokenizer, tmp_path):
    run = tmp_path / "run"
    path = write_run(run, tokenizer)
    tensors = load_file(str(path / "optimizer.safetensors"))
    key = next(k for k in tensors if k.endswith("exp_avg"))
    tensors[key] = torch.zeros(3, 3)
    save_file(tensors, str(path / "optimizer.safetensors"))
    update_sums(path)
    model = tiny_model(tokenizer)
    tokens = torch.tensor(tokenizer.encode(TEXT))
    with pytest.raises(CheckpointError, match=r"optimizer.safetensors .* does not fit .* has shape \[3, 3\]"):
        Trainer(model, tokens, tokens, TrainingConfig(max_steps=3, out_dir=str(run), progress=False),
                tokenizer=tokenizer, resume=True)


def test_old_format_without_checksums_still_loads(tokenizer, tmp_path):
    run = tmp_path / "run"
    path = write_run(run, tokenizer)
    (path / "SHA256SUMS").unlink()
    edit_state(path, lambda s: {**s, "format_version": 1,
                                "config": {**s["config"], "weight_decay": 0.01, "top_k": 50}})
    with pytest.warns(UserWarning,
                      match=r"state.json: ignored config field\(s\) \['top_k', 'weight_decay'\]"):
        saved = load_checkpoint(run)
    assert saved.step == 1 and saved.config.n_embd == 32


# -- kills in the middle of a save -----------------------------------------------------------

SAVER = """
import sys, torch
from tfa_core import create_tokenizer, get_model, load_alibi_config_preset
from tfa_core.training.checkpoint import save_checkpoint
tok = create_tokenizer("character", text="abcdefgh")
config = load_alibi_config_preset("character", n_layer=2, n_embd=64, block_size=16).update_from_tokenizer(tok)
model = get_model("FactoredALiBi", config)
step = int(sys.argv[2])
print("ready", flush=True)
while True:
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)
    step += 1
    save_checkpoint(sys.argv[1], model, step, tokenizer=tok, keep=2)
"""


def test_killed_saves_leave_an_intact_checkpoint(tmp_path):
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    step, rng = 0, random.Random(0)
    for kill in range(3):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(run), str(step)], env=env,
                                 stdout=subprocess.PIPE, text=True)
        assert saver.stdout.readline().strip() == "ready"
        time.sleep(0.3 + rng.random() * 0.5)  # somewhere in the middle of some save
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        saved = load_checkpoint(run)  # every check passes: SHA-256, headers, shapes, no NaN
        assert saved.step > step
        assert torch.all(saved.model.transformer.wte.weight.isfinite())
        step = saved.step + 1000  # the next saver writes new step numbers
    clean = [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    from tfa_core.training.checkpoint import clean_leftovers

    assert sorted(clean_leftovers(run)) == sorted(clean)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_a_missing_latest_names_the_checkpoints_there_are(tokenizer, tmp_path, capsys):
    run = tmp_path / "run"
    write_run(run, tokenizer, steps=(1, 2))
    (run / "checkpoints" / "latest").unlink()
    assert main(["info", str(run)]) == 2
    err = capsys.readouterr().err
    assert "latest is missing; give a checkpoint folder instead, e.g." in err and "step-00000002" in err
    assert main(["info", str(run / "checkpoints" / "step-00000002")]) == 0
