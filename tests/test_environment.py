"""TFA_DEVICE forces the device of every notebook; Apple's MPS is only used when asked for; bad values
say what to set."""

import json
from pathlib import Path

import pytest
import torch

from tfa_core.teaching.environment import DEVICE_ENV, device_override, environment_report
from tfa_core.training.distributed import pick_device

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "course").glob("[0-9][0-9]_*.ipynb"))


def setup_cell(path):
    cells = json.loads(path.read_text())["cells"]
    return next("".join(c["source"]) for c in cells if "setup" in c.get("metadata", {}).get("tags", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_picks_its_device_through_pick_device_auto(path):
    assert 'pick_device("auto")' in setup_cell(path)


def test_tfa_device_forces_the_device_of_a_notebooks_setup_cell(monkeypatch, capsys):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    namespace = {}
    exec(setup_cell(ROOT / "course" / "03_alibi.ipynb"), namespace)
    assert namespace["device"] == "cpu"
    assert "cpu (" in capsys.readouterr().out and f"forced by {DEVICE_ENV}" in environment_report("cpu")


@pytest.mark.parametrize("value, expected", [("", "auto"), ("auto", "auto"), (" CPU ", "cpu")])
def test_values(monkeypatch, value, expected):
    monkeypatch.setenv(DEVICE_ENV, value)
    assert (device_override() or "auto") == expected


def test_bad_values_name_the_variable_and_the_fix(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "gpu")
    with pytest.raises(ValueError, match="TFA_DEVICE='gpu' is not understood; set it to cpu, cuda"):
        pick_device("auto")
    if not torch.cuda.is_available():
        monkeypatch.setenv(DEVICE_ENV, "cuda")
        with pytest.raises(ValueError, match="asks for CUDA, but this torch sees no GPU; set TFA_DEVICE=cpu"):
            pick_device("auto")


def test_mps_is_never_chosen_by_itself(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "mps")
    assert pick_device("auto") == "mps"  # asked for: yes


def test_a_named_device_wins_over_the_variable(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "gpu")  # not even read: the command line named the device
    assert pick_device("cpu") == "cpu"
