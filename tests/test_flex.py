"""FlexAttention with an ALiBi score_mod equals the plain path (eager on CPU; compiled on CUDA)."""

import pytest
import torch

from tfa_core import alibi_slopes, get_model, GPTConfigALiBi
from tfa_core.model.attention import attention_bias, reference_attention
from tfa_core.model.flex import flex_alibi_attention, flex_available

pytestmark = pytest.mark.skipif(not flex_available(), reason="this torch has no FlexAttention")


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_alibi_equals_the_plain_path_on_cpu():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 6, 40, 8) for _ in range(3))  # no backward on CPU in eager flex
    slopes = alibi_slopes(6)
    flex = flex_alibi_attention(q, k, v, slopes, compile=False)
    plain = reference_attention(q, k, v, attention_bias(40, 40, slopes))
    torch.testing.assert_close(flex, plain, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled FlexAttention path runs on CUDA")
def test_model_on_cuda_uses_flex_and_matches_sdpa(monkeypatch):
    import tfa_core.model.flex as flex_module

    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=64, block_size=128, vocab_size=100, dropout=0.0)
    model = get_model("FactoredALiBi", config).cuda().eval()
    x = torch.randint(0, 100, (2, 128), device="cuda")
    with torch.no_grad():
        fast = model(x)["logits"]
        monkeypatch.setattr(flex_module, "USE_FLEX_ON_CUDA", False)
        plain = model(x)["logits"]
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)


def _cpu_compiler_available() -> bool:
    """torch.compile on a CPU (Inductor) writes C++ and needs a compiler to build it."""
    import shutil

    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


@pytest.mark.skipif(not _cpu_compiler_available(), reason="compiling on a CPU needs a C++ compiler")
def test_compiled_flex_alibi_matches_dense_and_compiles_once_for_every_layer():
    """What the CUDA path runs, compiled, on a CPU (forward only: FlexAttention has no CPU backward):
    four layers' slopes (each layer its own buffer, a fresh score_mod closure on every call) share one
    compiled graph — no recompilation per layer or per step — and every output equals the dense path."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 128, 16) for _ in range(3))
    layers = [alibi_slopes(4) * scale for scale in (1.0, 0.5, 2.0, 1.0)]  # different values, too
    frames_before = counters["frames"]["ok"]
    for _ in range(2):  # two "steps"
        for slopes in layers:
            flex = flex_alibi_attention(q, k, v, slopes, compile=True)
            plain = reference_attention(q, k, v, attention_bias(128, 128, slopes))
            torch.testing.assert_close(flex, plain, atol=1e-5, rtol=0)
    compiled = counters["frames"]["ok"] - frames_before
    assert compiled <= 1, f"FlexAttention was compiled {compiled} times for 8 calls"


@pytest.mark.parametrize("name", ["FactoredALiBi", "VanillaALiBi", "Vanilla"])
@pytest.mark.parametrize("path", ["sdpa", "flex"])
def test_a_compiled_model_is_one_graph(name, path, monkeypatch):
    """``torch.compile(model)`` (the Trainer's and cuda_throughput.py's) traces the whole forward
    pass as one graph, with no break in any step: no id-range read, no slope read, and on the
    FlexAttention path (forced here on a CPU: dynamo only traces, nothing is run on a GPU) the
    kernel and its block mask inside the model's graph."""
    import tfa_core.model.flex as flex_module

    if path == "flex":
        monkeypatch.setattr(flex_module, "takes", lambda q: True)
    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=32, block_size=64, vocab_size=50, dropout=0.0)
    model = get_model(name, config)
    x = torch.randint(0, 50, (2, 64))
    torch._dynamo.reset()
    with torch.set_grad_enabled(path == "sdpa"):  # FlexAttention has no backward on a CPU
        explained = torch._dynamo.explain(model)(x, labels=x)
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    assert explained.graph_count == 1
    code = explained.graphs[0].code
    uses_flex = path == "flex" and model.transformer.h[0].attn.alibi_slopes is not None
    assert ("flex_attention" in code) == uses_flex
    assert ("scaled_dot_product_attention" in code) == (not uses_flex)
