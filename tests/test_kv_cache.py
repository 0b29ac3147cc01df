"""The key/value cache: cached decoding must give what a full forward pass gives, for every model."""

import pytest
import torch

import torch.nn.functional as F

import tfa_core.model.fast_attention as fast_attention
from tfa_core import GPTConfigALiBi, KVCache, alibi_bias, generate_tokens, get_model, list_available_models
from tfa_core.model.alibi import dense_bias
from tfa_core.model.common import CausalLanguageModel

MODELS = list_available_models()


@pytest.fixture
def config():
    """Tiny, with room for ALiBi to decode far past the training length ``block_size=16``."""
    return GPTConfigALiBi(n_layer=2, n_head=4, n_embd=32, block_size=16, max_position_embeddings=256,
                          vocab_size=50, dropout=0.0)


def build(name, config, mixes=False):
    """A model in eval mode; with ``mixes``, ``use_v`` and ``use_proj`` on and (for the factored
    models) random ``H x H`` value and output mixes, so that channel mixing is really exercised."""
    model = get_model(name, config.copy(use_v=mixes, use_proj=mixes)).eval()
    if mixes and name.startswith("Factored"):
        with torch.no_grad():
            for block in model.transformer.h:
                block.attn.v_mix.copy_(torch.randn(4, 4))
                block.attn.proj_mix.copy_(torch.randn(4, 4))
    return model


def prompt(batch=2, length=5, seed=1):
    return torch.randint(0, 50, (batch, length), generator=torch.Generator().manual_seed(seed))


def greedy(model, idx, steps, use_cache):
    """Greedy decoding: the new ids ``(B, steps)`` and the logits they came from ``(B, steps, V)``."""
    pairs = list(generate_tokens(model, idx, steps, temperature=0, use_cache=use_cache))
    return torch.cat([ids for ids, _ in pairs], dim=1), torch.stack([logits for _, logits in pairs], dim=1)


# -- cached decoding equals full recomputation -----------------------------------------------------

VARIANTS = [(name, False) for name in MODELS] + [("FactoredALiBi", True), ("SASP", True)]


@pytest.mark.parametrize("name, mixes", VARIANTS)
def test_cached_greedy_decoding_equals_uncached_over_200_tokens(name, mixes, config):
    model = build(name, config, mixes)
    idx = prompt()
    cached_ids, cached_logits = greedy(model, idx, 200, use_cache=True)
    plain_ids, plain_logits = greedy(model, idx, 200, use_cache=False)
    assert cached_ids.shape == (2, 200)
    assert torch.equal(cached_ids, plain_ids)
    torch.testing.assert_close(cached_logits, plain_logits, atol=1e-4, rtol=0)
    if model.learned_positions:  # 205 tokens do not fit block_size=16: a sliding window
        assert model.max_sequence_length == 16
    else:  # past the training length, all of it in the cache
        assert model.max_sequence_length == 256


def test_cached_alibi_decoding_slides_like_uncached_past_max_position_embeddings(config):
    """At the model's limit the window slides: the cache is refilled each step and still agrees."""
    model = build("FactoredALiBi", config.copy(max_position_embeddings=24), mixes=True)
    cached_ids, cached_logits = greedy(model, prompt(), 60, use_cache=True)
    plain_ids, plain_logits = greedy(model, prompt(), 60, use_cache=False)
    assert torch.equal(cached_ids, plain_ids)
    torch.testing.assert_close(cached_logits, plain_logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_cached_steps_give_the_rows_of_a_full_forward(name, config):
    model = build(name, config, mixes=True)
    idx = prompt(length=9)
    full = model(torch.cat([idx, prompt(length=5, seed=2)], dim=1))["logits"]  # (2, 14, 50)
    with torch.no_grad():
        out = model(idx, use_cache=True)  # prefill: 9 tokens
        cache = out["past_key_values"]
        assert isinstance(cache, KVCache) and cache.length == 9
        torch.testing.assert_close(out["logits"], full[:, :9], atol=1e-5, rtol=0)
        one = model(prompt(length=5, seed=2)[:, :1], past_key_values=cache)["logits"]  # 1 new token
        torch.testing.assert_close(one[:, -1], full[:, 9], atol=1e-5, rtol=0)
        # several new tokens at once: the causal mask must put the queries at the end of the keys
        four = model(prompt(length=5, seed=2)[:, 1:], past_key_values=cache)["logits"]
        torch.testing.assert_close(four, full[:, 10:], atol=1e-5, rtol=0)
        assert cache.length == 14


@pytest.mark.parametrize("name", MODELS)
def test_generate_with_and_without_the_cache_samples_the_same_tokens(name, config):
    model = build(name, config)
    model.train()
    runs = [model.generate(prompt(length=3), 40, temperature=0.9, top_k=20, top_p=0.95,
                           generator=torch.Generator().manual_seed(5), use_cache=use_cache)
            for use_cache in (True, False)]
    assert runs[0].shape == (2, 43)
    assert torch.equal(runs[0], runs[1])
    assert model.training  # mode restored


# -- the ALiBi bias of a cached step ----------------------------------------------------------------

def test_one_new_query_gets_the_last_row_of_the_square_bias():
    slopes = torch.tensor([0.25, 0.0625, 0.015625, 0.00390625])
    row = alibi_bias(slopes, 1, 5)  # (H, 1, 5): one query at the end of five keys
    assert row[0, 0].tolist() == [-1.0, -0.75, -0.5, -0.25, 0.0]  # newest key: bias 0
    assert row[3, 0].tolist() == [-0.015625, -0.01171875, -0.0078125, -0.00390625, 0.0]
    assert torch.equal(row, alibi_bias(slopes, 5)[:, -1:])
    assert torch.equal(dense_bias(slopes, 1, 5), row[None])  # (1, H, 1, 5): 4-D for the fused kernel


def masks_given_to_sdpa(monkeypatch) -> list:
    """Every ``attn_mask`` handed to ``F.scaled_dot_product_attention`` from now on, in call order."""
    seen = []
    real = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
        seen.append(attn_mask)
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    return seen


@pytest.mark.parametrize("fast", [True, False])
def test_the_model_uses_the_last_row_of_the_square_bias_in_a_cached_step(config, monkeypatch, fast):
    """With or without the speed room's decoding ramp, a cached step's bias is the square bias's
    last row."""
    model = build("FactoredALiBi", config)
    model.fast_attention = fast
    seen = masks_given_to_sdpa(monkeypatch)
    with torch.no_grad():
        cache = model(prompt(length=11), use_cache=True)["past_key_values"]
        seen.clear()
        model(prompt(length=1, seed=3), past_key_values=cache)
    assert len(seen) == 2  # one per layer
    for bias in seen:
        assert bias.shape == (1, 4, 1, 12)  # (1, H, t_q, t_k)
        bias = bias[0]
        torch.testing.assert_close(bias, alibi_bias(model.alibi_slopes, 12)[:, -1:], atol=0, rtol=0)
        assert bias[:, 0, -1].tolist() == [0.0, 0.0, 0.0, 0.0]
        assert bias[0, 0, 0].item() == -0.25 * 11


@pytest.mark.parametrize("name", ["FactoredALiBi", "VanillaALiBi"])
def test_decoding_steps_slice_one_ramp_and_build_no_bias(name, config, monkeypatch):
    """Each one-token step's bias is a view of a ramp the cache keeps: built at the first step and
    never again -- however long the decoding goes on."""
    model = build(name, config)
    built = []
    real = fast_attention.alibi_bias
    monkeypatch.setattr(fast_attention, "alibi_bias", lambda *a: built.append(a[1:]) or real(*a))
    seen = masks_given_to_sdpa(monkeypatch)
    with torch.no_grad():
        cache = model(prompt(length=11), use_cache=True)["past_key_values"]
        for step in range(30):
            model(prompt(length=1, seed=step), past_key_values=cache)
    assert built == [(1, 256)]  # the ramp, once
    assert len(cache.alibi_ramps) == 1
    ((_, ramp),) = cache.alibi_ramps.values()
    assert ramp.shape == (1, 4, 1, 256)  # (1, H, 1, capacity)
    last = seen[-1]
    assert last.shape == (1, 4, 1, 41) and last.data_ptr() == ramp[..., 256 - 41:].data_ptr()  # a view
    assert torch.equal(last[0], alibi_bias(model.alibi_slopes, 41)[:, -1:])  # the square bias's last row


def test_decoding_builds_a_new_ramp_when_the_slopes_change(config):
    model = build("FactoredALiBi", config)
    with torch.no_grad():
        cache = model(prompt(length=4), use_cache=True)["past_key_values"]
        model(prompt(length=1), past_key_values=cache)
        model.transformer.h[1].attn.alibi_slopes = model.alibi_slopes * 0.5  # layer 1's own
        cached = model(prompt(length=1, seed=5), past_key_values=cache)["logits"]
        model.alibi_slopes.mul_(2.0)  # in place: the ramp must follow
        again = model(prompt(length=1, seed=6), past_key_values=cache)["logits"]
    assert len(cache.alibi_ramps) == 2  # layer 1's new slopes got a ramp of their own
    ids = torch.cat([prompt(length=4), prompt(length=1), prompt(length=1, seed=5), prompt(length=1, seed=6)],
                    dim=1)
    with torch.no_grad():  # the cached keys and values of layer 0 did not depend on the slopes change
        model.alibi_slopes.mul_(0.5)
        full = model(ids[:, :6])["logits"][:, -1:]
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    held = {tuple(slopes.tolist()) for slopes, _ in cache.alibi_ramps.values()}
    assert tuple((model.alibi_slopes * 2).tolist()) in held  # the in-place change was seen: a new ramp
    assert torch.isfinite(again).all()


# -- the comparison can fail ------------------------------------------------------------------------

def test_dropping_the_alibi_bias_in_cached_steps_breaks_the_comparison(config, monkeypatch):
    """The known bug class: a cached step without ALiBi. The comparison above must catch it."""
    model = build("FactoredALiBi", config)
    plain_ids, plain_logits = greedy(model, prompt(), 30, use_cache=False)
    real = CausalLanguageModel.attention_bias

    def no_alibi_when_cached(self, slopes, t_q, t_k, *args):
        return real(self, slopes if t_q == t_k else None, t_q, t_k, *args)

    monkeypatch.setattr(CausalLanguageModel, "attention_bias", no_alibi_when_cached)
    broken_ids, broken_logits = greedy(model, prompt(), 30, use_cache=True)
    assert torch.equal(broken_logits[:, 0], plain_logits[:, 0])  # the prefill is still right
    assert (broken_logits - plain_logits).abs().max() > 1e-2


def test_positions_that_ignore_the_cache_break_the_comparison(config, monkeypatch):
    """The other bug class: a learned-position model that restarts positions at 0 in cached steps."""
    model = build("Vanilla", config)
    plain_ids, plain_logits = greedy(model, prompt(), 8, use_cache=False)
    real = CausalLanguageModel.embed
    monkeypatch.setattr(CausalLanguageModel, "embed",
                        lambda self, input_ids, start=0: real(self, input_ids, 0))
    broken_ids, broken_logits = greedy(model, prompt(), 8, use_cache=True)
    assert (broken_logits - plain_logits).abs().max() > 1e-2


# -- limits and errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Factored", "Vanilla", "SASP"])
def test_learned_positions_cannot_be_cached_past_block_size(name, config):
    model = build(name, config)
    with torch.no_grad():
        cache = model(prompt(length=16), use_cache=True)["past_key_values"]
        with pytest.raises(ValueError, match=r"the cache holds 16 tokens and 1 more make 17, longer than "
                                             r"this model accepts \(16\): positions cannot go past "
                                             r"block_size=16.*use an ALiBi model, which can go further"):
            model(prompt(length=1), past_key_values=cache)
    assert cache.length == 16  # nothing was written


def test_alibi_cache_goes_past_block_size_up_to_max_position_embeddings(config):
    model = build("FactoredALiBi", config)
    with torch.no_grad():
        cache = model(prompt(length=250), use_cache=True)["past_key_values"]
        model(prompt(length=6), past_key_values=cache)
        assert cache.length == 256
        with pytest.raises(ValueError, match="raise config.max_position_embeddings"):
            model(prompt(length=1), past_key_values=cache)


def test_cache_misuse_gets_clear_errors(config):
    model = build("FactoredALiBi", config)
    ids = prompt()
    with pytest.raises(ValueError, match="attention_mask cannot be combined with a key/value cache"):
        model(ids, attention_mask=torch.ones(2, 5), use_cache=True)
    with pytest.raises(TypeError, match="past_key_values must be a KVCache"):
        model(ids, past_key_values=[(ids, ids)])
    with pytest.raises(ValueError, match="has 3 layers but the model has n_layer=2"):
        model(ids, past_key_values=KVCache(3, 256))
    with torch.no_grad():
        cache = model(ids, use_cache=True)["past_key_values"]
        with pytest.raises(ValueError, match="holds a batch of 2 but input_ids has 1 rows"):
            model(ids[:1], past_key_values=cache)
        small = model.new_kv_cache(capacity=6)
        model(ids, past_key_values=small)
        with pytest.raises(ValueError, match="the cache is full: it holds 5 of 6 tokens and 2 more"):
            model(ids[:, :2], past_key_values=small)
    with pytest.raises(ValueError, match="capacity 257 is more than this model accepts"):
        model.new_kv_cache(capacity=257)
    with pytest.raises(ValueError, match="n_layer must be a positive int"):
        KVCache(0, 8)


def test_a_cached_step_without_alibi_gets_an_explicit_mask_that_sees_every_key(config):
    """PyTorch's is_causal puts the queries at the start of the keys: wrong for a cached step, so
    the model hands the kernel an explicit mask."""
    model = build("Vanilla", config)
    assert model.attention_bias(None, 1, 6, None, torch.zeros(1)).tolist() == [[[[0.0] * 6]]]
    assert model.attention_bias(None, 6, 6, None, torch.zeros(1)) is None  # square: is_causal


# -- the buffers are allocated once ----------------------------------------------------------------

def test_cache_buffers_are_preallocated_and_written_in_place(config):
    model = build("FactoredALiBi", config, mixes=True)
    cache = model.new_kv_cache()
    with torch.no_grad():
        model(prompt(length=7), past_key_values=cache)
        buffers = [(layer.keys, layer.values) for layer in cache.layers]
        pointers = [(k.data_ptr(), v.data_ptr()) for k, v in buffers]
        assert [tuple(k.shape) for k, _ in buffers] == [(2, 4, 256, 8), (2, 4, 256, 8)]
        for step in range(20):
            model(prompt(length=1, seed=step), past_key_values=cache)
    assert cache.length == 27
    assert [(layer.keys.data_ptr(), layer.values.data_ptr()) for layer in cache.layers] == pointers
    assert all(layer.keys is k for layer, (k, _) in zip(cache.layers, buffers))


def test_generate_fills_one_cache_even_when_the_window_slides(config):
    """Past block_size the cache is refilled at every step, into the same buffers (reset, not remade)."""
    model = build("Vanilla", config)
    pointers = []

    def remember_buffer(module, args, kwargs, output):
        pointers.append(kwargs["past_key_values"][0].keys.data_ptr())

    model.register_forward_hook(remember_buffer, with_kwargs=True)
    model.generate(prompt(length=3), 30, temperature=0)
    assert len(pointers) == 30  # one forward pass per token
    assert len(set(pointers)) == 1
