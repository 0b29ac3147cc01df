import pytest
import torch

from tfa_core import get_model, sample_next_token, top_k_filter, top_p_filter

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


@pytest.mark.parametrize("name", ["FactoredALiBi", "Vanilla"])
def test_generate_past_the_limit_keeps_the_latest_context(name, tiny_config):
    model = get_model(name, tiny_config)
    model.train()
    out = model.generate(torch.tensor([[1]]), max_new_tokens=80, temperature=0.8, top_k=5, top_p=0.9,
                         generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 81) and out.max() < tiny_config.vocab_size
    assert model.training  # mode restored


def test_generate_is_reproducible_with_a_seed(tiny_config):
    model = get_model("FactoredALiBi", tiny_config)
    runs = [model.generate(torch.tensor([[4, 5]]), 20, temperature=1.0, generator=torch.Generator().manual_seed(7))
            for _ in range(2)]
    assert torch.equal(*runs)


def test_generate_rejects_bad_arguments(tiny_config):
    model = get_model("FactoredALiBi", tiny_config)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(torch.tensor([[1]]), -1)
    with pytest.raises(ValueError, match="input_ids\\[None\\]"):
        model.generate(torch.tensor([1, 2]), 3)
