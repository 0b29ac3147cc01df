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
