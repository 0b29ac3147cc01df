import math

import pytest
import torch
import torch.nn.functional as F

from tfa_core import (
    GPTConfigALiBi,
    alibi_slopes,
    channel_mix,
    get_model,
    kronecker_lift,
    list_available_models,
    load_alibi_config_preset,
)
from tfa_core.model.alibi import dense_bias
from tfa_core.model.common import merge_heads, split_heads

MODELS = list_available_models()


def ids(config, batch=2, length=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, length or config.block_size), generator=g)


# -- attention paths -------------------------------------------------------------------------

def plain_attention(q, k, v, bias):
    """softmax(q k^T / sqrt(d) + bias) v, written out."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores + bias, dim=-1) @ v


@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_equals_plain_softmax_attention_with_alibi(padded):
    B, H, T, d = 2, 6, 12, 8
    q, k, v = (torch.randn(B, H, T, d) for _ in range(3))
    mask = None
    if padded:
        mask = torch.ones(B, T)
        mask[0, :4] = 0
    bias = dense_bias(alibi_slopes(H), T, T, mask)
    fast = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(fast, plain_attention(q, k, v, bias), atol=1e-5, rtol=0)


def test_the_written_out_branch_equals_the_fused_kernel_in_every_factored_model(tiny_config):
    """keep_weights sends each layer down the formula written out (and keeps its probabilities):
    the same logits as the fused kernel, padded or not, with a cache or not."""
    config = tiny_config.copy(use_v=True, use_proj=True)
    for name in ["FactoredALiBi", "Factored", "FactoredSinusoidal", "FactoredRotary", "FactoredNoPE"]:
        model = get_model(name, config).eval()
        x = ids(config)
        mask = torch.ones_like(x)
        mask[1, :5] = 0
        fused = model(x, attention_mask=mask)["logits"]
        fused_cached = model(x[:, :9], use_cache=True)
        fused_step = model(x[:, 9:10], past_key_values=fused_cached["past_key_values"])["logits"]
        for block in model.transformer.h:
            block.attn.keep_weights = True
        torch.testing.assert_close(model(x, attention_mask=mask)["logits"], fused, atol=1e-5, rtol=0)
        weights = model.transformer.h[0].attn.weights
        assert weights.shape == (2, 4, 16, 16)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 16))
        cached = model(x[:, :9], use_cache=True)
        step = model(x[:, 9:10], past_key_values=cached["past_key_values"])["logits"]
        torch.testing.assert_close(step, fused_step, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_model_logits_equal_with_the_plain_attention(name, tiny_config, monkeypatch):
    config = tiny_config.copy(use_v=True, use_proj=True)
    model = get_model(name, config).eval()
    x = ids(config)
    fast = model(x)["logits"]

    def plain(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
        if attn_mask is None:
            attn_mask = dense_bias(None, q.shape[-2], k.shape[-2])
        return plain_attention(q, k, v, attn_mask)

    monkeypatch.setattr(F, "scaled_dot_product_attention", plain)
    torch.testing.assert_close(model(x)["logits"], fast, atol=1e-5, rtol=0)


# -- channel mixing --------------------------------------------------------------------------

def test_channel_mixing_never_builds_a_c_by_c_matrix():
    """Every tensor made in a forward and backward pass with both H x H mixes on, recorded by a
    dispatch mode: none is C x C (the Kronecker lift ``mix ⊗ I_d`` is for teaching only)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    C = 48
    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=C, block_size=20, vocab_size=50, dropout=0.0,
                            use_v=True, use_proj=True)
    model = get_model("FactoredALiBi", config)
    shapes = []

    class Recording(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    shapes.append(tuple(t.shape))
            return out

    x = ids(config)
    with Recording():
        model(x, labels=x)["loss"].backward()
    assert (4, 4) in shapes  # the H x H mixes and their gradients are there
    assert len(shapes) > 100
    assert not [s for s in shapes if s[-2:] == (C, C)]
    assert model.transformer.h[0].attn.v_mix.grad.abs().sum() > 0


def test_channel_mix_is_the_kronecker_lift():
    H, d = 4, 5
    x = torch.randn(2, 7, H * d)
    mix = torch.randn(H, H)
    by_heads = merge_heads(channel_mix(split_heads(x, H), mix))
    dense = x @ kronecker_lift(mix, d).T
    torch.testing.assert_close(by_heads, dense, atol=1e-5, rtol=1e-5)


def test_value_mix_moves_whole_head_blocks():
    """V = a permutation of heads moves each head's d channels unchanged to another head."""
    H, d = 3, 4
    x = torch.arange(2 * H * d, dtype=torch.float32).view(1, 2, H * d)
    swap = torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
    y = merge_heads(channel_mix(split_heads(x, H), swap))
    assert torch.equal(y[..., :d], x[..., d:2 * d]) and torch.equal(y[..., 2 * d:], x[..., 2 * d:])


def test_identity_mixes_change_nothing(tiny_config):
    plain = get_model("FactoredALiBi", tiny_config).eval()
    mixed = get_model("FactoredALiBi", tiny_config.copy(use_v=True, use_proj=True)).eval()
    mixed.load_state_dict(plain.state_dict(), strict=False)  # v_mix and proj_mix stay the identity
    x = ids(tiny_config)
    torch.testing.assert_close(mixed(x)["logits"], plain(x)["logits"], atol=1e-6, rtol=0)


def test_block_matches_the_two_stream_equations(tiny_config):
    """xt changes only by attention of values taken from xt; xe only by the MLP."""
    config = tiny_config.copy(use_v=True, use_proj=True)
    model = get_model("FactoredALiBi", config).eval()
    block = model.transformer.h[0]
    with torch.no_grad():
        block.attn.v_mix.copy_(torch.randn(4, 4))
        block.attn.proj_mix.copy_(torch.randn(4, 4))
    xt, xe = torch.randn(2, 10, 32), torch.randn(2, 10, 32)
    bias = dense_bias(model.alibi_slopes, 10)
    new_xt, new_xe = block(xt, xe, bias)
    h = block.ln_1(xt + xe)
    q, k = (split_heads(t, 4) for t in block.attn.c_attn(h).split(32, dim=2))
    v = split_heads(xt @ kronecker_lift(block.attn.v_mix, 8).T, 4)
    y = plain_attention(q, k, v, bias)
    expected_xt = xt + merge_heads(y) @ kronecker_lift(block.attn.proj_mix, 8).T
    expected_xe = xe + block.mlp(block.ln_2(expected_xt + xe))
    torch.testing.assert_close(new_xt, expected_xt, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new_xe, expected_xe, atol=1e-5, rtol=1e-5)


# -- positions -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, clean", [("FactoredALiBi", True), ("FactoredRotary", True),
                                         ("FactoredNoPE", True), ("Factored", False),
                                         ("FactoredSinusoidal", False)])
def test_nothing_positional_reaches_xt(name, clean, tiny_config):
    """The same token at every position: with nothing positional added to xt, every position's
    xt and xe are identical at every layer (attention over identical values gives the same mix).
    Learned and sinusoidal positions make them differ from the start."""
    x = torch.full((1, 12), 7)
    model = get_model(name, tiny_config).eval()
    streams = model(x, return_streams=True)["streams"]
    assert torch.count_nonzero(streams[0][1]) == 0  # xe starts at zero
    xt0 = streams[0][0][0]
    if not clean:
        assert not torch.allclose(xt0[0], xt0[1])
        return
    assert torch.equal(xt0, model.transformer.wte.weight[7].expand(12, -1))
    for xt, xe in streams:
        torch.testing.assert_close(xt[0], xt[0, :1].expand(12, -1), atol=1e-6, rtol=0)
        torch.testing.assert_close(xe[0], xe[0, :1].expand(12, -1), atol=1e-6, rtol=0)
    assert not any("wpe" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("name, clean", [("VanillaALiBi", True), ("VanillaRotary", True),
                                         ("VanillaNoPE", True), ("Vanilla", False),
                                         ("VanillaSinusoidal", False)])
def test_standard_block_sees_positions_only_through_its_scheme(name, clean, tiny_config):
    """The same token at every position: with nothing added to the stream (ALiBi, rotary, none)
    every position gets the same logits, since attention over identical values gives the same mix;
    learned and sinusoidal vectors added to the stream make the positions differ."""
    model = get_model(name, tiny_config).eval()
    logits = model(torch.full((1, 12), 7))["logits"][0]  # (12, vocab)
    same = torch.allclose(logits, logits[:1].expand(12, -1), atol=1e-5, rtol=0)
    assert same == clean


def test_standard_attention_rotates_queries_and_keys_as_the_factored_one_does(tiny_config):
    """VanillaRotary's attention is softmax(R q (R k)^T / sqrt(d) + causal) v, written out with the
    rotation of ``positions.py``; with a cache, the new tokens are rotated from the cached length on."""
    from tfa_core.model.positions import apply_rotary, rotary_angles

    attn = get_model("VanillaRotary", tiny_config).eval().transformer.h[0].attn
    with torch.no_grad():
        attn.c_attn.weight.normal_()  # sharp scores, so that the rotation shows in the output
    x = torch.randn(2, 10, 32)
    q, k, v = (split_heads(t, 4) for t in attn.c_attn(x).split(32, dim=2))
    cos, sin = rotary_angles(torch.arange(10), 8)
    y = plain_attention(apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v, dense_bias(None, 10, 10))
    expected = attn.c_proj(merge_heads(y))
    torch.testing.assert_close(attn(x, None), expected, atol=1e-5, rtol=0)
    attn.rotary = False
    assert not torch.allclose(attn(x, None), expected, atol=1e-3)


@pytest.mark.parametrize("name", ["FactoredSinusoidal", "VanillaSinusoidal"])
def test_sinusoids_start_at_the_scale_of_the_token_embeddings(name):
    """Issue #19: unit-amplitude sinusoids (norm 8 at 128 channels) against embeddings of std 0.02
    (norm 0.23) drowned the tokens, 35 to 1. Scaled by the init std, a sinusoid is 0.71x a token
    embedding's norm: the ratio "Attention Is All You Need" starts from (section 3.4)."""
    from tfa_core.model.positions import sinusoidal_embeddings

    config = load_alibi_config_preset("character", vocab_size=65)
    torch.manual_seed(0)
    model = get_model(name, config)
    x = torch.randint(0, 65, (1, 128))
    tokens = model.transformer.wte(x)  # (1, 128, 128)
    positions = model.embed(x) - tokens  # what the scheme adds to the stream
    token_norm = tokens.norm(dim=-1).mean().item()
    assert abs(token_norm - 0.02 * math.sqrt(128)) < 0.01  # 0.226
    unit = sinusoidal_embeddings(torch.arange(128), 128).norm(dim=-1)  # each position: sqrt(64)
    torch.testing.assert_close(unit, torch.full((128,), 8.0))
    assert 34 < 8.0 / token_norm < 37  # what was added before: 35x the tokens
    torch.testing.assert_close(positions[0].norm(dim=-1), torch.full((128,), 0.16), atol=1e-5, rtol=0)
    assert 0.65 < 0.16 / token_norm < 0.75  # now: about 1/sqrt(2), inside the band 0.5 to 2


def test_a_sinusoidal_model_saved_before_the_scale_existed_loads_as_it_was_trained(tmp_path):
    """Checkpoints from before issue #19 added sinusoids at amplitude 1; their config has no
    sinusoid_scale, and loading gives them 1.0 (with a warning), never the new 0.02 silently."""
    from tfa_core.model.config import GPTConfigALiBi
    from tfa_core.model.positions import sinusoidal_embeddings

    config = load_alibi_config_preset("character", vocab_size=65)
    model = get_model("FactoredSinusoidal", config)
    saved = model.config.to_dict()
    del saved["sinusoid_scale"]
    with pytest.warns(UserWarning, match="saved before sinusoid_scale existed.*amplitude 1.0"):
        old = GPTConfigALiBi.from_dict(saved)
    assert old.sinusoid_scale == 1.0 and model.config.sinusoid_scale == 0.02
    x = torch.randint(0, 65, (1, 16))
    reloaded = get_model("FactoredSinusoidal", old)
    added = reloaded.embed(x) - reloaded.transformer.wte(x)
    torch.testing.assert_close(added[0], sinusoidal_embeddings(torch.arange(16), 128), atol=1e-6, rtol=0)
    ours = model.config.to_dict()
    del ours["sinusoid_scale"]
    ours["position_scheme"] = "alibi"
    assert GPTConfigALiBi.from_dict(ours).sinusoid_scale == 0.02  # other schemes never read it
    with pytest.raises(ValueError, match="sinusoid_scale must be positive"):
        config.copy(sinusoid_scale=0.0)


def test_rotary_scores_depend_only_on_distance():
    from tfa_core.model.positions import apply_rotary, rotary_angles

    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):
        cos_i, sin_i = rotary_angles(torch.tensor([i]), 8)
        cos_j, sin_j = rotary_angles(torch.tensor([j]), 8)
        return (apply_rotary(q, cos_i, sin_i) * apply_rotary(k, cos_j, sin_j)).sum()

    torch.testing.assert_close(score(5, 2), score(105, 102), atol=1e-4, rtol=0)
    assert not torch.allclose(score(5, 2), score(5, 4))


def test_sinusoidal_table_values():
    from tfa_core.model.positions import sinusoidal_embeddings

    table = sinusoidal_embeddings(torch.arange(3), 4)
    expected = torch.tensor([[0.0, 1.0, 0.0, 1.0],
                             [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
                             [math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]])
    torch.testing.assert_close(table, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["FactoredRotary", "VanillaRotary"])
def test_rotary_needs_an_even_head_dim(name):
    config = GPTConfigALiBi(n_layer=1, n_head=4, n_embd=36, vocab_size=10)
    with pytest.raises(ValueError, match="head_dim .* must be even"):
        get_model(name, config)


def test_get_model_records_the_position_scheme(tiny_config):
    before = tiny_config.to_dict()
    model = get_model("FactoredRotary", tiny_config)
    assert model.position_scheme == "rotary"
    assert model.config.position_scheme == "rotary" and model.config.model_type == "FactoredRotary"
    assert get_model("VanillaALiBi", tiny_config).config.position_scheme == "alibi"
    for name, scheme in [("VanillaSinusoidal", "sinusoidal"), ("VanillaRotary", "rotary"),
                         ("VanillaNoPE", "none")]:
        model = get_model(name, tiny_config)
        assert type(model).__name__ == "VanillaGPT" and model.position_scheme == scheme
        assert model.max_sequence_length == tiny_config.max_position_embeddings  # no table to stop at
        assert not any("wpe" in n for n, _ in model.named_parameters())
    rotary = get_model("VanillaRotary", tiny_config)
    assert [block.attn.rotary for block in rotary.transformer.h] == [True, True]
    assert tiny_config.to_dict() == before  # the caller's config is left as it was
    with pytest.raises(ValueError, match="unknown position_scheme 'relative'"):
        tiny_config.copy(position_scheme="relative")


@pytest.mark.parametrize("name", MODELS)
def test_causality(name, tiny_config):
    model = get_model(name, tiny_config).eval()
    x = ids(tiny_config)
    changed = x.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % tiny_config.vocab_size
    a, b = model(x)["logits"], model(changed)["logits"]
    torch.testing.assert_close(a[:, :10], b[:, :10], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_custom_slopes_are_used(tiny_config):
    model = get_model("FactoredALiBi", tiny_config).eval()
    assert torch.equal(model.alibi_slopes, torch.tensor([0.25, 0.0625, 0.015625, 0.00390625]))
    x = ids(tiny_config, batch=1)
    before = model(x)["logits"]
    # very steep slopes: each query sees only its own key, so attention returns xt itself
    model.alibi_slopes.fill_(1e4)
    xt0, xt1, xt2 = (s[0] for s in model(x, return_streams=True)["streams"][:3])
    torch.testing.assert_close(xt1, 2 * xt0, atol=1e-6, rtol=0)
    torch.testing.assert_close(xt2, 4 * xt0, atol=1e-5, rtol=0)  # every layer uses the model's slopes
    assert not torch.allclose(model(x)["logits"], before)
    assert "alibi_slopes" in model.state_dict()  # saved with the weights


def test_one_layer_can_have_slopes_of_its_own(tiny_config):
    model = get_model("FactoredALiBi", tiny_config).eval()
    x = ids(tiny_config, batch=1)
    before = model(x)["logits"]
    model.transformer.h[1].attn.alibi_slopes = torch.full((4,), 1e4)  # layer 1 only
    xt0, xt1, xt2 = (s[0] for s in model(x, return_streams=True)["streams"][:3])
    assert not torch.allclose(xt1, 2 * xt0, atol=1e-3)  # layer 0 keeps the model's slopes
    torch.testing.assert_close(xt2, 2 * xt1, atol=1e-5, rtol=0)  # layer 1 sees only its own key
    state = model.state_dict()
    assert "transformer.h.1.attn.alibi_slopes" in state and "transformer.h.0.attn.alibi_slopes" not in state
    fresh = get_model("FactoredALiBi", tiny_config).eval()
    fresh.load_state_dict(state)  # the override is given a buffer and loaded
    torch.testing.assert_close(fresh(x)["logits"], model(x)["logits"], atol=0, rtol=0)
    assert not torch.allclose(fresh(x)["logits"], before)


def test_a_checkpoint_with_one_slopes_buffer_per_layer_still_loads(tiny_config):
    """Before the model-level buffer every layer saved its own copy of the slopes."""
    model = get_model("FactoredALiBi", tiny_config).eval()
    old = {k: v for k, v in model.state_dict().items() if k != "alibi_slopes"}
    for i in range(tiny_config.n_layer):
        old[f"transformer.h.{i}.attn.alibi_slopes"] = model.alibi_slopes.clone()
    old["transformer.h.1.attn.alibi_slopes"] = model.alibi_slopes * 2  # one layer had been changed
    fresh = get_model("FactoredALiBi", tiny_config).eval()
    fresh.load_state_dict(old)
    assert torch.equal(fresh.alibi_slopes, model.alibi_slopes)
    assert fresh.transformer.h[0].attn.alibi_slopes is None
    assert torch.equal(fresh.transformer.h[1].attn.alibi_slopes, model.alibi_slopes * 2)


def test_left_padding_leaves_alibi_logits_unchanged(tiny_config):
    """ALiBi depends only on distances, so a left-padded sequence gives the same logits."""
    model = get_model("FactoredALiBi", tiny_config).eval()
    x = ids(tiny_config, batch=1, length=10)
    padded = torch.cat([torch.zeros(1, 6, dtype=torch.long), x], dim=1)
    mask = torch.cat([torch.zeros(1, 6), torch.ones(1, 10)], dim=1)
    out = model(padded, attention_mask=mask)["logits"]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 6:], model(x)["logits"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["Vanilla", "SASP", "Factored"])
def test_right_padding_leaves_real_tokens_unchanged(name, tiny_config):
    model = get_model(name, tiny_config).eval()
    x = ids(tiny_config, batch=1, length=10)
    padded = torch.cat([x, torch.zeros(1, 6, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 10), torch.zeros(1, 6)], dim=1)
    torch.testing.assert_close(model(padded, attention_mask=mask)["logits"][:, :10], model(x)["logits"],
                               atol=1e-5, rtol=0)


# -- lengths ---------------------------------------------------------------------------------

def test_lengths_up_to_the_limit_and_past_it(tiny_config):
    model = get_model("FactoredALiBi", tiny_config).eval()
    limit = tiny_config.max_position_embeddings
    assert limit == 64
    assert model(ids(tiny_config, batch=1, length=limit))["logits"].shape == (1, limit, 50)
    with pytest.raises(ValueError, match="sequence length 65 is longer than this model accepts .64.: "
                                         "raise config.max_position_embeddings"):
        model(ids(tiny_config, batch=1, length=limit + 1))


@pytest.mark.parametrize("name", ["Factored", "Vanilla", "SASP"])
def test_learned_positions_stop_at_block_size(name, tiny_config):
    model = get_model(name, tiny_config).eval()
    assert model(ids(tiny_config, batch=1, length=16))["logits"].shape == (1, 16, 50)
    with pytest.raises(ValueError, match="learned position table covers only block_size=16"):
        model(ids(tiny_config, batch=1, length=17))


# -- inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: torch.zeros(2, 5), TypeError, "integer token ids"),
        (lambda: torch.zeros(5, dtype=torch.long), ValueError, "input_ids\\[None\\]"),
        (lambda: torch.zeros(1, 0, dtype=torch.long), ValueError, "empty"),
        (lambda: torch.full((1, 3), 50), ValueError, "token ids must be in \\[0, 50\\)"),
        (lambda: [[1, 2, 3]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs_get_clear_errors(make, error, words, tiny_config):
    model = get_model("FactoredALiBi", tiny_config)
    with pytest.raises(error, match=words):
        model(make())


def test_mask_and_labels_must_match_the_inputs(tiny_config):
    model = get_model("FactoredALiBi", tiny_config)
    x = ids(tiny_config)
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        model(x, attention_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="labels must have the shape"):
        model(x, labels=x[:, :4])


def test_model_needs_a_vocabulary_and_a_known_name():
    with pytest.raises(ValueError, match="update_from_tokenizer"):
        get_model("FactoredALiBi", GPTConfigALiBi(vocab_size=None))
    with pytest.raises(ValueError,
                       match=r"available models are \['FactoredALiBi', 'Factored', 'FactoredSinusoidal'"):
        get_model("GPT5", GPTConfigALiBi())


# -- loss and learning -----------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_loss_at_initialisation_is_ln_vocab(name):
    config = GPTConfigALiBi(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=1000, dropout=0.0)
    model = get_model(name, config)
    x = ids(config, batch=8)
    loss = model(x, labels=x)["loss"].item()
    assert abs(loss - math.log(1000)) < 0.1


def test_labels_are_shifted_inside_and_minus_100_ignored(tiny_config):
    model = get_model("FactoredALiBi", tiny_config).eval()
    x = ids(tiny_config)
    out = model(x, labels=x)
    expected = F.cross_entropy(out["logits"][:, :-1].reshape(-1, 50), x[:, 1:].reshape(-1))
    torch.testing.assert_close(out["loss"], expected)
    labels = x.clone()
    labels[:, 8:] = -100
    partial = model(x, labels=labels)["loss"]
    expected = F.cross_entropy(out["logits"][:, :7].reshape(-1, 50), x[:, 1:8].reshape(-1))
    torch.testing.assert_close(partial, expected)
    assert model(x)["loss"] is None


@pytest.mark.parametrize("name", MODELS)
def test_a_small_model_overfits_one_batch(name, tiny_config):
    model = get_model(name, tiny_config.copy(use_v=True, use_proj=True))
    x = ids(tiny_config, batch=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = model(x, labels=x)["loss"]
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 3.5 and loss.item() < 0.3


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config):
    model = get_model("FactoredALiBi", tiny_config)
    x = ids(tiny_config)
    model(x, labels=x)["loss"].backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(x, labels=x)["loss"].backward()
    for a, p in zip(plain, model.parameters()):
        torch.testing.assert_close(p.grad, a, atol=1e-6, rtol=1e-5)


def test_the_alibi_bias_is_built_once_per_forward_and_shared_by_the_layers(tiny_config, monkeypatch):
    import tfa_core.model.alibi as alibi_module

    calls = []
    real = alibi_module.alibi_bias
    monkeypatch.setattr(alibi_module, "alibi_bias", lambda *a: calls.append(a[1:]) or real(*a))
    model = get_model("FactoredALiBi", tiny_config.copy(n_layer=4)).eval()
    x = ids(tiny_config)
    first = model(x)["logits"]
    assert calls == [(16, 16)]  # one bias for four layers
    model(x)
    assert calls == [(16, 16)] * 2  # and one for the next forward pass: nothing outlives a pass
    model.transformer.h[2].attn.alibi_slopes = torch.tensor([1.0, 0.5, 0.25, 0.125])
    changed = model(x)["logits"]
    assert len(calls) == 4  # the model's slopes, and layer 2's own
    assert not torch.allclose(changed, first)
    model.transformer.h[2].attn.alibi_slopes = None
    torch.testing.assert_close(model(x)["logits"], first, atol=0, rtol=0)


def test_learned_slopes_get_gradients(tiny_config):
    model = get_model("FactoredALiBi", tiny_config)
    model.alibi_slopes = torch.nn.Parameter(model.alibi_slopes.clone())
    x = ids(tiny_config)
    model(x, labels=x)["loss"].backward()
    assert model.alibi_slopes.grad.abs().sum() > 0
