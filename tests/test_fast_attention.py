"""The speed room (tfa_core/model/fast_attention.py) gives what the plain dense path gives: query blocks
for long inputs, FlexAttention (eager on a CPU here; compiled on CUDA), and compiled models that stay
one graph. The decoding ramp's tests are in test_kv_cache.py."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import tfa_core.model.fast_attention as fast_attention
from tfa_core import GPTConfigALiBi, alibi_slopes, get_model
from tfa_core.model.alibi import dense_bias
from tfa_core.model.fast_attention import BlockedBias, flex_alibi_attention, flex_available


def plain_attention(q, k, v, bias):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores + bias, dim=-1) @ v


def ids(config, batch=2, length=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, length or config.block_size), generator=g)


def spy_on_sdpa(monkeypatch, record):
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
        record(q, k, attn_mask)
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)


# -- query blocks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["FactoredALiBi", "VanillaALiBi", "FactoredRotary", "VanillaRotary", "SASP"])
def test_query_blocks_equal_the_dense_path(name, monkeypatch):
    """Long inputs go through attention in query blocks; the numbers must not change."""
    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=32, block_size=96, vocab_size=50, dropout=0.0)
    model = get_model(name, config).eval()
    x = ids(config, length=96)
    mask = torch.ones(2, 96)
    mask[1, :7] = 0
    model.fast_attention = False
    dense = model(x, attention_mask=mask)["logits"]
    model.fast_attention = True
    monkeypatch.setattr(fast_attention, "QUERY_BLOCK", 20)
    torch.testing.assert_close(model(x, attention_mask=mask)["logits"], dense, atol=1e-5, rtol=0)


def test_each_query_block_sees_only_the_keys_it_needs(monkeypatch):
    shapes = []
    spy_on_sdpa(monkeypatch, lambda q, k, bias: shapes.append((q.shape[2], k.shape[2], tuple(bias.shape))))
    monkeypatch.setattr(fast_attention, "QUERY_BLOCK", 20)
    q, k, v = (torch.randn(1, 2, 50, 4) for _ in range(3))
    BlockedBias(alibi_slopes(2), 50, 50).attend(q, k, v)
    assert shapes == [(20, 20, (1, 2, 20, 20)), (20, 40, (1, 2, 20, 40)), (10, 50, (1, 2, 10, 50))]


def test_only_biased_attention_goes_in_query_blocks(monkeypatch):
    """600 tokens with ALiBi: blocks of QUERY_BLOCK = 256, with and without gradients, the same
    numbers as the dense path; a plain square causal mask (Vanilla, rotary, no positions) stays one
    fused is_causal call at any length, with no bias at all."""
    calls = []
    spy_on_sdpa(monkeypatch,
                lambda q, k, bias: calls.append(None if bias is None else tuple(bias.shape[-2:])))
    config = GPTConfigALiBi(n_layer=1, n_head=2, n_embd=8, block_size=600, vocab_size=50, dropout=0.0)
    x = ids(config, batch=1)
    model = get_model("FactoredALiBi", config)
    blocks = [(256, 256), (256, 512), (88, 600)]
    trained = model(x, labels=x)
    trained["loss"].backward()
    with torch.no_grad():
        evaluated = model(x)["logits"]
        model.fast_attention = False
        whole = model(x)["logits"]
        get_model("FactoredNoPE", config)(x)  # no slopes, no padding
    assert calls == blocks + blocks + [(600, 600), None]
    torch.testing.assert_close(trained["logits"].detach(), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(evaluated, whole, atol=1e-5, rtol=0)


def test_long_inputs_get_shorter_blocks_so_that_a_block_bias_stays_bounded(monkeypatch):
    rows = fast_attention.query_block_rows
    assert rows(4096, 4, 4, 1024) == 1024  # 4 heads x 1024 x 4096 x 4 bytes = 64 MiB: fits
    assert rows(16384, 4, 4, 1024) == 256  # 16k keys: a quarter of the rows for the same 64 MiB
    assert rows(16384, 12, 2, 1024) == 170  # 12 heads in bf16
    assert rows(10**7, 16, 4, 1024) == 64  # never fewer than 64 rows
    assert rows(10**7, 16, 4, 20) == 20  # nor more than asked for
    shapes = []
    spy_on_sdpa(monkeypatch, lambda q, k, bias: shapes.append(tuple(bias.shape)))
    monkeypatch.setattr(fast_attention, "BLOCK_BIAS_BYTES", 2 * 200 * 4 * 70)  # 70 rows of 200 keys
    monkeypatch.setattr(fast_attention, "QUERY_BLOCK", 100)
    q, k, v = (torch.randn(1, 2, 200, 4) for _ in range(3))
    blocks = BlockedBias(alibi_slopes(2), 200, 200).attend(q, k, v)
    assert shapes == [(1, 2, 70, 70), (1, 2, 70, 140), (1, 2, 60, 200)]
    dense = plain_attention(q, k, v, dense_bias(alibi_slopes(2), 200, 200))
    torch.testing.assert_close(blocks, dense, atol=1e-5, rtol=0)


def test_query_block_biases_are_shared_in_training_and_dropped_in_inference(tiny_config, monkeypatch):
    """Autograd keeps every block's bias for the backward pass, so in training the layers share them;
    without gradients each layer builds a block's bias when it needs it, so that no more than one
    block's bias is alive at a time."""
    import tfa_core.model.alibi as alibi_module

    calls = []
    real = alibi_module.alibi_bias
    monkeypatch.setattr(alibi_module, "alibi_bias", lambda *a: calls.append(a[1:]) or real(*a))
    monkeypatch.setattr(fast_attention, "QUERY_BLOCK", 6)
    model = get_model("FactoredALiBi", tiny_config.copy(n_layer=3))
    x = ids(tiny_config)  # 16 tokens: blocks of 6, 6 and 4 queries over 6, 12 and 16 keys
    model(x, labels=x)["loss"].backward()
    assert calls == [(6, 6), (6, 12), (4, 16)]  # once, for all three layers
    calls.clear()
    with torch.no_grad():
        model(x)
    assert calls == [(6, 6), (6, 12), (4, 16)] * 3  # per layer, each dropped after its block


# -- FlexAttention ------------------------------------------------------------------------------------

needs_flex = pytest.mark.skipif(not flex_available(), reason="this torch has no FlexAttention")


@needs_flex
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_alibi_equals_the_plain_path_on_cpu():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 6, 40, 8) for _ in range(3))  # no backward on CPU in eager flex
    slopes = alibi_slopes(6)
    flex = flex_alibi_attention(q, k, v, slopes, compile=False)
    plain = plain_attention(q, k, v, dense_bias(slopes, 40, 40))
    torch.testing.assert_close(flex, plain, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled FlexAttention path runs on CUDA")
def test_model_on_cuda_uses_flex_and_matches_sdpa(monkeypatch):
    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=64, block_size=128, vocab_size=100, dropout=0.0)
    model = get_model("FactoredALiBi", config).cuda().eval()
    x = torch.randint(0, 100, (2, 128), device="cuda")
    with torch.no_grad():
        fast = model(x)["logits"]
        monkeypatch.setattr(fast_attention, "USE_FLEX_ON_CUDA", False)
        plain = model(x)["logits"]
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)


def _cpu_compiler_available() -> bool:
    """torch.compile on a CPU (Inductor) writes C++ and needs a compiler to build it."""
    import shutil

    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


@needs_flex
@pytest.mark.skipif(not _cpu_compiler_available(), reason="compiling on a CPU needs a C++ compiler")
def test_compiled_flex_alibi_matches_dense_and_compiles_once_for_every_layer():
    """What the CUDA path runs, compiled, on a CPU (forward only: FlexAttention has no CPU backward):
    four layers' slopes (each layer slopes of its own, a fresh score_mod closure on every call) share one
    compiled graph — no recompilation per layer or per step — and every output equals the dense path."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 128, 16) for _ in range(3))
    layers = [alibi_slopes(4) * scale for scale in (1.0, 0.5, 2.0, 1.0)]  # different values, too
    frames_before = counters["frames"]["ok"]
    for _ in range(2):  # two "steps"
        for slopes in layers:
            flex = flex_alibi_attention(q, k, v, slopes, compile=True)
            plain = plain_attention(q, k, v, dense_bias(slopes, 128, 128))
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
    if path == "flex":
        if not flex_available():
            pytest.skip("this torch has no FlexAttention")
        monkeypatch.setattr(fast_attention, "flex_takes", lambda q: True)
        monkeypatch.setattr(fast_attention, "QUERY_BLOCK", 0)  # every biased input to the speed room
    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=32, block_size=64, vocab_size=50, dropout=0.0)
    model = get_model(name, config)
    x = torch.randint(0, 50, (2, 64))
    torch._dynamo.reset()
    with torch.set_grad_enabled(path == "sdpa"):  # FlexAttention has no backward on a CPU
        explained = torch._dynamo.explain(model)(x, labels=x)
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    assert explained.graph_count == 1
    code = explained.graphs[0].code
    uses_flex = path == "flex" and model.alibi_slopes is not None
    assert ("flex_attention" in code) == uses_flex
    assert ("scaled_dot_product_attention" in code) == (not uses_flex)


# -- FlexAttention's compilations: a few for any number of shapes, and never a silent fallback ---------

needs_compiled_flex = pytest.mark.skipif(not (flex_available() and _cpu_compiler_available()),
                                         reason="needs FlexAttention and a C++ compiler")


@pytest.fixture
def fresh_dynamo():
    """No compiled versions and no counts from earlier tests, before and after."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def study_evaluation_shapes(monkeypatch) -> list[tuple[int, ...]]:
    """The ``(B, H, T, d)`` queries that one study's evaluation hands FlexAttention: the cpu recipe's
    lengths and evaluation tokens, both window modes, through the real ``evaluate_length``, with the
    CUDA branch taken on this CPU and FlexAttention replaced by a recorder (4 heads of 8 here)."""
    from tfa_core.experiments.evaluation import evaluate_length
    from tfa_core.experiments.study import RECIPES

    recipe = RECIPES["cpu"]
    shapes = []

    def record(q, k, v, slopes):
        shapes.append(tuple(q.shape))
        return torch.zeros_like(q)

    with monkeypatch.context() as patch:
        patch.setattr(fast_attention, "flex_takes", lambda q: True)
        patch.setattr(fast_attention, "QUERY_BLOCK", 1)  # every length to the speed room, as on CUDA
        patch.setattr(fast_attention, "flex_alibi_attention", record)
        config = GPTConfigALiBi(n_layer=1, n_head=4, n_embd=32, block_size=recipe["block_size"],
                                max_position_embeddings=max(recipe["lengths"]), vocab_size=50, dropout=0.0)
        model = get_model("FactoredALiBi", config)
        text = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, 50, (recipe["eval_tokens"] + 1,), generator=text)
        for length in recipe["lengths"]:
            for mode in ("non_overlapping", "sliding"):
                evaluate_length(model, tokens, length, mode, tokens_scored=recipe["eval_tokens"])
    return list(dict.fromkeys(shapes))


@needs_compiled_flex
@pytest.mark.usefixtures("fresh_dynamo")
def test_one_study_evaluation_compiles_flex_attention_twice(monkeypatch):
    """Every (batch, length) of a study's evaluation through the compiled FlexAttention (what CUDA runs;
    forward only on a CPU). Compiled per shape, the lengths and the shorter last batches were 16
    versions, past dynamo's limit of 8: the rest ran unfused, with every T x T score in memory. Now
    ``evaluate_length`` pads its last batch, so each length is one shape (batch 8), and the first shape
    compiles as it is, the second once with its length symbolic, for every later length: two
    compilations in all. No fallback, and the dense path's numbers."""
    from torch._dynamo.utils import counters

    shapes = study_evaluation_shapes(monkeypatch)
    assert sorted({shape[2] for shape in shapes}) == [128, 256, 512, 1024, 2048]
    assert len(shapes) == 5 and {shape[0] for shape in shapes} == {8}  # one shape per length
    slopes = alibi_slopes(4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for shape in shapes:
            q, k, v = (torch.randn(shape) for _ in range(3))
            flex = flex_alibi_attention(q, k, v, slopes)
            plain = plain_attention(q[:1], k[:1], v[:1], dense_bias(slopes, shape[2], shape[2]))
            torch.testing.assert_close(flex[:1], plain, atol=1e-5, rtol=0, msg=str(shape))
    fallbacks = [str(w.message) for w in caught if "recompile limit" in str(w.message)
                 or "without torch.compile" in str(w.message)]
    compiled = counters["frames"]["ok"]
    assert fallbacks == [] and counters["frames"]["total"] == compiled  # every call ran compiled
    assert compiled == 2, compiled


@needs_compiled_flex
@pytest.mark.usefixtures("fresh_dynamo")
def test_flex_attention_past_the_recompile_limit_warns_and_runs_in_query_blocks():
    """Should dynamo refuse to compile once more (here its limit is set to one version), the call
    neither fails nor runs an uncompiled FlexAttention: it warns, naming the shape, and attends in
    query blocks, with the same numbers. (The limit is set with dynamo's own ``config.patch``:
    pytest's monkeypatch leaves dynamo's config broken for every later compilation in the process.)"""
    slopes = alibi_slopes(4)
    with torch._dynamo.config.patch(recompile_limit=1):
        for length in (64, 96):
            q, k, v = (torch.randn(2, 4, length, 8) for _ in range(3))
            if length == 64:
                flex = flex_alibi_attention(q, k, v, slopes)  # the one version dynamo may keep
            else:
                warning = r"recompile limit \(1\) at queries of shape \(2, 4, 96, 8\)"
                with pytest.warns(RuntimeWarning, match=warning):
                    flex = flex_alibi_attention(q, k, v, slopes)
            plain = plain_attention(q, k, v, dense_bias(slopes, length, length))
            torch.testing.assert_close(flex, plain, atol=1e-5, rtol=0)
    assert torch._dynamo.config.recompile_limit == 8  # and it is back
