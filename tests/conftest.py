from pathlib import Path as _Path

import pytest
import torch

from tfa_core import GPTConfigALiBi


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_config():
    """A model small enough to build and run in milliseconds."""
    return GPTConfigALiBi(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=50, dropout=0.0)


# A student release (tfa release --students) has no solutions/: the test files that load the reference
# solutions are not collected there, so the README's test command passes in it as written.
_ROOT = _Path(__file__).resolve().parents[1]
if not (_ROOT / "solutions").is_dir():
    collect_ignore = sorted(path.name for path in _Path(__file__).parent.glob("test_*.py")
                            if "solutions" in path.read_text(encoding="utf-8"))
