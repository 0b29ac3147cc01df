import pytest
import torch

import tfa_core.decoding.generate as generation_module
from tfa_core import GPTConfigALiBi, create_tokenizer, get_model, sample_next_token, stream_generate
from tfa_core import top_k_filter, top_p_filter
from tfa_core.decoding.generate import TokenDecoder

NEG = float("-inf")


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 4.0, 2.0, 3.0]])
    assert top_k_filter(logits, 2).tolist() == [[NEG, 4.0, NEG, 3.0]]
    assert torch.equal(top_k_filter(logits, 10), logits)


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    kept = top_p_filter(logits, 0.8).isfinite().tolist()
    assert kept == [[True, True, False, False]]  # 0.5 + 0.3 reaches 0.8
    assert top_p_filter(logits, 0.81).isfinite().tolist() == [[True, True, True, False]]
    assert top_p_filter(logits, 0.1).isfinite().tolist() == [[True, False, False, False]]  # top-1 always kept
    # order of the vocabulary does not matter
    shuffled = logits[:, [2, 0, 3, 1]]
    assert top_p_filter(shuffled, 0.8).isfinite().tolist() == [[False, True, False, True]]


def test_temperature_zero_is_greedy_and_sampling_is_seeded():
    logits = torch.tensor([[0.1, 2.0, 0.3], [5.0, 0.0, 0.0]])
    assert sample_next_token(logits, temperature=0).tolist() == [[1], [0]]
    a = sample_next_token(logits.repeat(50, 1), 1.0, generator=torch.Generator().manual_seed(3))
    b = sample_next_token(logits.repeat(50, 1), 1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert sample_next_token(logits, 1.0, top_k=1).tolist() == [[1], [0]]


@pytest.mark.parametrize(
    "kwargs, words",
    [(dict(temperature=-1), "temperature"), (dict(top_k=0), "top_k"), (dict(top_p=1.5), "top_p"),
     (dict(top_p=0), "top_p")],
)
def test_bad_sampling_settings(kwargs, words):
    with pytest.raises(ValueError, match=words):
        sample_next_token(torch.zeros(1, 3), **{"temperature": 1.0, **kwargs})


def test_generate_greedy_matches_a_hand_loop(tiny_config):
    model = get_model("FactoredALiBi", tiny_config).eval()
    prompt = torch.tensor([[1, 2, 3]])
    out = model.generate(prompt, max_new_tokens=8, temperature=0)
    assert out.shape == (1, 11) and torch.equal(out[:, :3], prompt)
    idx = prompt
    for _ in range(8):
        idx = torch.cat([idx, model(idx)["logits"][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, idx)


@pytest.mark.parametrize("name", ["FactoredALiBi", "Vanilla", "VanillaRotary"])
def test_generate_past_the_limit_keeps_the_latest_context(name, tiny_config):
    model = get_model(name, tiny_config)
    model.train()
    out = model.generate(torch.tensor([[1]]), max_new_tokens=80, temperature=0.8, top_k=5, top_p=0.9,
                         generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 81) and out.max() < tiny_config.vocab_size
    assert model.training  # mode restored


def test_generate_is_reproducible_with_a_seed(tiny_config):
    model = get_model("FactoredALiBi", tiny_config)
    runs = [model.generate(torch.tensor([[4, 5]]), 20, temperature=1.0,
                           generator=torch.Generator().manual_seed(7))
            for _ in range(2)]
    assert torch.equal(*runs)


def test_generate_rejects_bad_arguments(tiny_config):
    model = get_model("FactoredALiBi", tiny_config)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(torch.tensor([[1]]), -1)
    with pytest.raises(ValueError, match="input_ids\\[None\\]"):
        model.generate(torch.tensor([1, 2]), 3)


# -- streaming -------------------------------------------------------------------------------------

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"


@pytest.fixture(scope="module")
def gpt2():
    return create_tokenizer("gpt2")


def test_stream_joins_to_the_decoded_continuation_character_level():
    tokenizer = create_tokenizer("character", text=TEXT)
    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=32, block_size=16, dropout=0.0)
    config.update_from_tokenizer(tokenizer)
    model = get_model("FactoredALiBi", config)
    pieces = list(stream_generate(model, tokenizer, "To be", 40, temperature=1.0, top_k=10, seed=3))
    ids = torch.tensor([tokenizer.encode("To be")])
    expected = model.generate(ids, 40, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(3))
    assert "".join(pieces) == tokenizer.decode(expected[0, 5:])
    assert pieces == [tokenizer.decode([i]) for i in expected[0, 5:].tolist()]  # one piece per token
    assert pieces != list(stream_generate(model, tokenizer, "To be", 40, temperature=1.0, top_k=10, seed=4))


def test_stream_joins_to_the_decoded_continuation_gpt2(gpt2):
    config = GPTConfigALiBi(n_layer=1, n_head=2, n_embd=16, block_size=16, dropout=0.0)
    config.update_from_tokenizer(gpt2)
    model = get_model("Vanilla", config)
    pieces = list(stream_generate(model, gpt2, "Hello world", 30, temperature=1.0, seed=0))
    ids = torch.tensor([gpt2.encode("Hello world")])
    expected = model.generate(ids, 30, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert "".join(pieces) == gpt2.decode(expected[0, 2:])
    assert 0 < len(pieces) <= 30


def test_gpt2_ids_that_split_a_character_are_held_back(gpt2):
    """127 and 102 are the single bytes 0xC3 and 0xA9 of "é"; 8582, 25081 split an emoji; 33768, 98 and
    17312 are pieces of "日本". Alone, each decodes to U+FFFD; streamed, nothing is yielded until the
    character is complete."""
    assert gpt2.decode([127]) == "\ufffd" and gpt2.decode([127, 102]) == "é"
    script = [34, 1878, 127, 102, 290, 8582, 25081, 33768, 98, 17312]
    decoder = TokenDecoder(gpt2)
    assert [decoder.push(i) for i in script] == ["C", "af", "", "é", " and", "", "🙂", "", "日", ""]
    assert decoder.flush() == "\ufffd"  # "本" never completed: flushed as the tokenizer decodes it
    assert gpt2.decode(script) == "Café and🙂日\ufffd"


def test_stream_generate_yields_whole_characters_only(gpt2, tiny_config, monkeypatch):
    script = [34, 1878, 127, 102, 290, 8582, 25081, 33768, 98]

    def scripted_tokens(model, idx, max_new_tokens, *args, **kwargs):
        for token_id in script[:max_new_tokens]:
            yield torch.tensor([[token_id]]), None

    monkeypatch.setattr(generation_module, "generate_tokens", scripted_tokens)
    model = get_model("FactoredALiBi", tiny_config)
    pieces = list(stream_generate(model, gpt2, "Hi", 9, seed=0))
    assert pieces == ["C", "af", "é", " and", "🙂", "日"]
    assert not any("\ufffd" in piece for piece in pieces)
    assert model.training  # mode restored


def test_stream_generate_rejects_an_empty_prompt(gpt2, tiny_config):
    model = get_model("FactoredALiBi", tiny_config)
    with pytest.raises(ValueError, match="prompt is empty"):
        next(stream_generate(model, gpt2, "", 5))
