"""The logit lens and attention maps of tfa_core.experiments.inspection, against the model's own
forward pass."""

import math

import pytest
import torch
import torch.nn.functional as F

from tfa_core import GPTConfigALiBi, get_model
from tfa_core.model.alibi import dense_bias
from tfa_core.model.common import merge_heads, split_heads
from tfa_core.model.factored import channel_mix
from tfa_core.experiments.inspection import (attention_maps, layer_attention, lens_logits, logit_lens,
                                             token_ranks)


def config(**changes):
    values = dict(n_layer=3, n_head=4, n_embd=32, block_size=16, vocab_size=40, dropout=0.0)
    return GPTConfigALiBi(**{**values, **changes})


def model_of(name="FactoredALiBi", seed=0, **changes):
    torch.manual_seed(seed)
    model = get_model(name, config(**changes)).eval()
    with torch.no_grad():  # norms away from 1 and mixes away from the identity, so that mistakes show
        for parameter in model.parameters():
            if parameter.dim() == 1 or parameter.shape[0] == parameter.shape[1] == model.config.n_head:
                parameter.add_(0.3 * torch.randn_like(parameter))
    return model


IDS = torch.tensor([[3, 17, 17, 5, 0, 39, 12, 8, 8, 21]])


# -- the logit lens ------------------------------------------------------------------------------------

def test_the_lens_of_the_last_sum_is_the_models_output():
    model = model_of()
    lens = logit_lens(model, IDS)
    assert set(lens) == {"xt", "xe", "xt+xe"}
    for name in lens:
        assert lens[name].shape == (4, 1, 10, 40)  # n_layer + 1 read-outs
    with torch.no_grad():
        logits = model(IDS)["logits"]
    assert torch.allclose(lens["xt+xe"][-1], logits, atol=1e-5)


def test_the_lens_is_the_final_norm_then_the_tied_embedding_at_every_layer():
    model = model_of()
    lens = logit_lens(model, IDS)
    with torch.no_grad():
        streams = model(IDS, return_streams=True)["streams"]
        wte, ln_f = model.transformer.wte.weight, model.transformer.ln_f
        for layer, (xt, xe) in enumerate(streams):
            by_hand = F.layer_norm(xt, (32,), ln_f.weight, eps=1e-5) @ wte.T
            assert torch.allclose(lens["xt"][layer], by_hand, atol=1e-5)
            assert torch.allclose(lens["xe"][layer], ln_f(xe) @ wte.T, atol=1e-5)
            assert torch.allclose(lens["xt+xe"][layer], ln_f(xt + xe) @ wte.T, atol=1e-5)
    # xe starts at zero: its lens before the first block is all zeros (no token preferred)
    assert torch.count_nonzero(lens["xe"][0]) == 0


def test_xt_before_the_first_block_reads_as_the_input_tokens():
    model = model_of()
    lens = logit_lens(model, IDS[0])  # a 1-D input is one sequence
    assert lens["xt"].shape == (4, 1, 10, 40)
    assert torch.equal(lens["xt"][0, 0].argmax(-1), IDS[0])
    assert torch.equal(token_ranks(lens["xt"][0], IDS), torch.zeros(1, 10, dtype=torch.long))


def test_a_single_stream_model_gives_one_stream_read_by_hooks():
    model = model_of("Vanilla")
    lens = logit_lens(model, IDS)
    assert list(lens) == ["x"] and lens["x"].shape == (4, 1, 10, 40)
    with torch.no_grad():
        logits = model(IDS)["logits"]
        first = model.transformer.wte(IDS) + model.transformer.wpe(torch.arange(10))  # positions added
        expected_first = model.transformer.ln_f(first) @ model.transformer.wte.weight.T
    assert torch.allclose(lens["x"][-1], logits, atol=1e-5)
    assert torch.allclose(lens["x"][0], expected_first, atol=1e-5)
    assert not model._forward_hooks and not model.transformer.h[0]._forward_pre_hooks  # hooks removed


def test_the_lens_restores_the_models_mode_and_takes_a_batch():
    model = model_of().train()
    batch = torch.stack([IDS[0], IDS[0].flip(0)])
    lens = logit_lens(model, batch)
    assert model.training
    assert lens["xt"].shape == (4, 2, 10, 40)
    alone = logit_lens(model, batch[1])
    assert torch.allclose(lens["xe"][:, 1], alone["xe"][:, 0], atol=1e-5)


def test_lens_logits_checks_the_width():
    model = model_of()
    with pytest.raises(ValueError, match="model width C"):
        lens_logits(torch.zeros(2, 31), model.transformer.ln_f, model.transformer.wte.weight)


def test_token_ranks_count_the_tokens_above():
    logits = torch.tensor([[0.1, 2.0, -1.0, 0.5], [3.0, 3.0, 1.0, 0.0]])
    assert token_ranks(logits, torch.tensor([1, 1])).tolist() == [0, 0]  # a tie counts in its favour
    assert token_ranks(logits, torch.tensor([0, 3])).tolist() == [2, 3]
    with pytest.raises(TypeError, match="integer ids"):
        token_ranks(logits, torch.tensor([0.0, 1.0]))


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="torch.Tensor"):
        logit_lens(model_of(), [1, 2, 3])
    with pytest.raises(ValueError, match=r"\(T,\) or \(B, T\)"):
        logit_lens(model_of(), torch.zeros(1, 1, 3, dtype=torch.long))


# -- attention maps ------------------------------------------------------------------------------------

def attention_outputs(model, ids):
    """What each block's attention module returned in the model's real forward pass."""
    outputs = []
    handles = [block.attn.register_forward_hook(lambda m, args, out: outputs.append(out))
               for block in model.transformer.h]
    with torch.no_grad():
        streams = model(ids, return_streams=True)["streams"]
    for handle in handles:
        handle.remove()
    return outputs, streams


@pytest.mark.parametrize("name, options", [
    ("FactoredALiBi", {}),
    ("FactoredALiBi", {"use_v": True, "use_proj": True}),
    ("FactoredALiBi", {"n_head": 6, "n_embd": 48}),  # slopes not a power of two
    ("FactoredRotary", {}),
    ("Factored", {}),
])
def test_maps_times_values_equal_the_models_attention(name, options):
    model = model_of(name, **options)
    maps = attention_maps(model, IDS)
    H, T = model.config.n_head, IDS.shape[1]
    assert maps.shape == (model.config.n_layer, H, T, T)
    outputs, streams = attention_outputs(model, IDS)
    for layer, block in enumerate(model.transformer.h):
        xt = streams[layer][0]
        values = split_heads(xt, H)  # (1, H, T, d)
        if block.attn.v_mix is not None:
            values = channel_mix(values, block.attn.v_mix)
        y = maps[layer][None] @ values  # (1, H, T, d)
        if block.attn.proj_mix is not None:
            y = channel_mix(y, block.attn.proj_mix)
        assert torch.allclose(merge_heads(y), outputs[layer], atol=1e-5), f"layer {layer}"


def test_maps_are_causal_rows_of_probabilities():
    maps = attention_maps(model_of(), IDS)
    T = IDS.shape[1]
    assert torch.allclose(maps.sum(-1), torch.ones(3, 4, T), atol=1e-6)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    assert maps[..., future].abs().max() == 0
    assert torch.all(maps[..., 0, 0] == 1)  # the first query can only see itself


def test_with_equal_scores_the_map_is_alibi_alone():
    """Zero query/key weights make every score 0: the probabilities are softmax of the ALiBi bias."""
    model = model_of()
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight.zero_()
    maps = attention_maps(model, IDS)
    slopes = model.alibi_slopes  # 2^-2, 2^-4, 2^-6, 2^-8
    # the last query of 10 tokens: weights proportional to exp(-m * distance)
    distance = torch.arange(9, -1, -1).float()
    expected = torch.softmax(-slopes[:, None] * distance, dim=-1)
    assert torch.allclose(maps[1, :, -1], expected, atol=1e-6)
    # head 0 (m = 1/4): the newest key gets 1 / sum_k exp(-k/4), k = 0..9
    assert maps[0, 0, -1, -1].item() == pytest.approx(1 / sum(math.exp(-k / 4) for k in range(10)), rel=1e-5)


def test_layer_attention_of_one_layer_with_a_batch():
    model = model_of()
    attn = model.transformer.h[0].attn
    h = torch.randn(2, 5, 32)
    probabilities = layer_attention(attn, h, model.alibi_slopes)
    assert probabilities.shape == (2, 4, 5, 5)
    with torch.no_grad():
        out = attn(h, h, dense_bias(model.alibi_slopes, 5))  # values h, for the check
    assert torch.allclose(merge_heads(probabilities @ split_heads(h, 4)), out, atol=1e-5)


def test_attention_maps_refuse_what_they_cannot_read():
    with pytest.raises(TypeError, match="token-factored model"):
        attention_maps(model_of("Vanilla"), IDS)
    with pytest.raises(ValueError, match="one sequence"):
        attention_maps(model_of(), torch.cat([IDS, IDS]))
    with pytest.raises(TypeError, match="factored attention layer"):
        layer_attention(model_of("Vanilla").transformer.h[0].attn, torch.zeros(1, 2, 32))
