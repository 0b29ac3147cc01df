"""FlexAttention with an ALiBi score_mod equals the plain path (eager on CPU; compiled on CUDA)."""

import pytest
import torch

from tfa_core import alibi_slopes, get_model, GPTConfigALiBi
from tfa_core.attention import attention_bias, reference_attention
from tfa_core.flex import flex_alibi_attention, flex_available

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
    import tfa_core.flex as flex_module

    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=64, block_size=128, vocab_size=100, dropout=0.0)
    model = get_model("FactoredALiBi", config).cuda().eval()
    x = torch.randint(0, 100, (2, 128), device="cuda")
    with torch.no_grad():
        fast = model(x)["logits"]
        monkeypatch.setattr(flex_module, "USE_FLEX_ON_CUDA", False)
        plain = model(x)["logits"]
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)
