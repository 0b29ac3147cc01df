"""The CUDA paths: FlexAttention forward and backward, bf16 autocast, torch.compile, cached decoding.

Skipped without a GPU (as in CI); ``make gpu-check`` runs them with the CUDA benchmark on a GPU
machine. Each compares the fast path with the plain one, so a wrong kernel cannot pass.
"""

import pytest
import torch

import tfa_core.model.fast_attention as flex_module
from tfa_core import GPTConfigALiBi, Trainer, TrainingConfig, get_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def config(**overrides):
    values = dict(n_layer=2, n_head=4, n_embd=64, block_size=256, vocab_size=100, dropout=0.0)
    return GPTConfigALiBi(**{**values, **overrides})


def loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    loss = model(ids, labels=ids)["loss"]
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.fixture
def exact_fp32(monkeypatch):
    """Plain fp32 matrix products (no TF32), so that two kernels can be compared closely."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def test_flex_gradients_equal_the_sdpa_gradients(monkeypatch, exact_fp32):
    """Training through FlexAttention (compiled kernel, its own backward) gives SDPA's gradients;
    a missing or misplaced ALiBi bias changes them by orders of magnitude more than this tolerance."""
    torch.manual_seed(0)
    model = get_model("FactoredALiBi", config()).cuda().train()
    ids = torch.randint(0, 100, (4, 256), device="cuda")
    flex_loss, flex_grads = loss_and_grads(model, ids)
    monkeypatch.setattr(flex_module, "USE_FLEX_ON_CUDA", False)
    sdpa_loss, sdpa_grads = loss_and_grads(model, ids)
    torch.testing.assert_close(flex_loss, sdpa_loss, atol=1e-4, rtol=1e-4)
    for name, grad in sdpa_grads.items():
        torch.testing.assert_close(flex_grads[name], grad, atol=1e-4, rtol=1e-2, msg=name)


def test_bf16_flex_forward_is_close_to_fp32(exact_fp32):
    torch.manual_seed(0)
    model = get_model("FactoredALiBi", config()).cuda().eval()
    ids = torch.randint(0, 100, (2, 256), device="cuda")
    with torch.no_grad():
        exact = model(ids)["logits"]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            fast = model(ids)["logits"].float()
    assert (fast - exact).abs().max() < 0.1  # bf16 keeps about 3 significant digits


@pytest.mark.parametrize("name", ["FactoredALiBi", "Vanilla"])
def test_compiled_bf16_training_lowers_the_loss(name):
    """The Trainer's CUDA path end to end: bf16 autocast, TF32, torch.compile (FlexAttention for
    the factored model), on a repeating sequence that a working model learns within 60 steps."""
    torch.manual_seed(0)
    pattern = torch.randint(0, 100, (64,))
    tokens = pattern.repeat(200)
    model = get_model(name, config(block_size=128))
    trainer = Trainer(model, tokens, tokens[:4096], TrainingConfig(
        max_steps=60, batch_size=8, warmup_steps=5, eval_interval=60, eval_tokens=2048, log_interval=1,
        device="cuda", precision="bf16", compile=True, progress=False))
    history = trainer.fit()
    losses = [r["loss"] for r in history if r["kind"] == "train"]
    assert trainer.uses_bf16
    assert losses[0] > 4.0 and losses[-1] < 1.0, losses[::10]


def test_cached_decoding_on_cuda_equals_full_recomputation():
    torch.manual_seed(0)
    model = get_model("FactoredALiBi", config(max_position_embeddings=512)).cuda().eval()
    prompt = torch.randint(0, 100, (2, 7), device="cuda")
    cached = model.generate(prompt, 300, temperature=0, use_cache=True)  # past block_size=256
    plain = model.generate(prompt, 300, temperature=0, use_cache=False)
    assert torch.equal(cached, plain)


def test_long_evaluation_on_cuda_uses_no_dense_bias():
    """16k tokens through FlexAttention: the memory of a dense (1, H, T, T) fp32 bias would be
    4 GiB; the whole forward pass must stay far below that."""
    model = get_model("FactoredALiBi", config(max_position_embeddings=16384)).cuda().eval()
    ids = torch.randint(0, 100, (1, 16384), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.no_grad():
        logits = model(ids)["logits"]
    torch.cuda.synchronize()
    assert torch.isfinite(logits).all()
    assert torch.cuda.max_memory_allocated() - before < 512 * 2**20
