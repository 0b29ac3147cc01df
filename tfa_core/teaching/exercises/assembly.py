"""Exercises of notebook 05, assembling the model: the exact parameter count of a factored model from
its config, and the next-token loss (shifted targets, ``-100`` ignored) that training minimises."""

from __future__ import annotations


import torch
import torch.nn.functional as F

from tfa_core.model.config import GPTConfigALiBi
from tfa_core.model.common import causal_lm_loss
from tfa_core.model.parameters import estimate_model_parameters
from .checking import Case, Exercise, Mistake, register
from .comparing import close_number, same_count


# -- 05.parameter_count -------------------------------------------------------------------------------


def reference_parameter_count(config: GPTConfigALiBi) -> int:
    """The exact number of parameters of ``get_model("FactoredALiBi", config)``."""
    return estimate_model_parameters(config, "FactoredALiBi")


def _config(n_layer, n_head, n_embd, vocab_size, block_size=64, **options) -> GPTConfigALiBi:
    return GPTConfigALiBi(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size,
                          block_size=block_size, model_type="FactoredALiBi", **options)


def _count_variant(mistake: str):
    """A wrong count: the exact one with one plausible error."""

    def answer(config: GPTConfigALiBi) -> int:
        V, C, H, L, b = config.vocab_size, config.n_embd, config.n_head, config.n_layer, int(config.bias)
        norm = C + b * C
        qk = 2 * C * C + b * 2 * C
        mlp = 8 * C * C + b * (4 * C + C)
        mixes = int(config.use_v) + int(config.use_proj)
        mix = H * H
        if mistake == "tutorial":  # a full Q, K, V and an output projection
            qk = 4 * C * C + b * 4 * C
        if mistake == "dense mixes":
            mix = C * C
        if mistake == "no mixes":
            mixes = 0
        if mistake == "no biases":
            b = 0
            norm, qk, mlp = C, 2 * C * C, 8 * C * C
        count = V * C + L * (qk + mlp + 2 * norm + mixes * mix) + norm
        if mistake == "embedding twice":
            count += V * C
        if mistake == "position table":
            count += config.block_size * C
        if mistake == "no ln_f":
            count -= norm
        return count

    return answer


register(Exercise(
    id="05.parameter_count",
    function="parameter_count",
    title="the exact parameter count of a factored model",
    reference=reference_parameter_count,
    cases=lambda: [
        Case("the character preset: 4 layers, 4 heads, C = 128, vocabulary of 81",
             (_config(4, 4, 128, 81, block_size=128, dropout=0.0),),
             hint="per block: Q and K (2C²), the MLP (C -> 4C -> C, 8C²), two layer norms (C each); "
                  "then the embedding (vocab x C) and ln_f (C)"),
        Case("2 layers, 6 heads, C = 48, use_v=True", (_config(2, 6, 48, 100, use_v=True),),
             hint="use_v adds an H x H value mix per layer: H² numbers, not C²"),
        Case("3 layers, 8 heads, C = 64, use_v=True and use_proj=True",
             (_config(3, 8, 64, 57, use_v=True, use_proj=True),)),
        Case("2 layers, 4 heads, C = 32, bias=True", (_config(2, 4, 32, 50, bias=True),),
             hint="bias=True gives every Linear a bias of its output size and every LayerNorm a bias "
                  "of size C"),
        Case("one layer, one head, C = 8, vocabulary of 5, use_proj=True and bias=True",
             (_config(1, 1, 8, 5, use_proj=True, bias=True),)),
        Case("the small preset with GPT-2's 50,257 tokens: 4 layers, 4 heads, C = 256",
             (_config(4, 4, 256, 50257, block_size=256),)),
    ],
    compare=same_count,
    mistakes=[
        Mistake(_count_variant("tutorial"),
                "that is 12C² per layer, the original tutorial's count: it assumes a full Q, K, V and an "
                "output projection. This block has only Q and K (2C²): the values are xt itself"),
        Mistake(_count_variant("embedding twice"),
                "the embedding is counted twice: lm_head.weight *is* wte.weight (tied), so count it once"),
        Mistake(_count_variant("position table"),
                "there is no position table: ALiBi puts positions in the attention scores, "
                "with no parameters"),
        Mistake(_count_variant("no ln_f"), "the final layer norm ln_f (C more numbers) is missing"),
        Mistake(_count_variant("dense mixes"),
                "the value and output mixes are H x H matrices over whole heads (V ⊗ I_d), so each costs "
                "H² per layer, not C²"),
        Mistake(_count_variant("no mixes"),
                "use_v and use_proj each add an H x H matrix (H² numbers) to every layer"),
        Mistake(_count_variant("no biases"),
                "with bias=True every Linear has a bias (its output size) and every LayerNorm one of size C"),
    ],
))

# -- 05.next_token_loss -------------------------------------------------------------------------------


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _labels(batch: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def _padded_case():
    logits, labels = _randn(2, 6, 7, seed=2), _labels(2, 6, 7, seed=3)
    labels[1, 4:] = -100  # the second row is padded after four tokens
    labels[0, 2] = -100  # and one target in the first row is ignored
    return logits, labels


def _confident_case():
    """Logits far apart, and targets the model thinks nearly impossible: log(softmax) underflows."""
    logits = 60.0 * _randn(2, 4, 5, seed=6)
    labels = logits.argmin(dim=-1).roll(1, dims=1)  # target t+1 is the least likely token at t
    return logits, labels


def _cross_entropy(logits, targets, reduction="mean"):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=-100, reduction=reduction)


def _loss_variant(mistake: str):
    def answer(logits, labels):
        if mistake == "no shift":
            return _cross_entropy(logits, labels)
        if mistake == "wrong direction":
            return _cross_entropy(logits[:, 1:], labels[:, :-1])
        shifted_logits, targets = logits[:, :-1], labels[:, 1:]
        if mistake == "counts ignored":
            return _cross_entropy(shifted_logits, targets, reduction="sum") / targets.numel()
        if mistake == "log of softmax":
            log_probs = torch.log(torch.softmax(shifted_logits.float(), dim=-1))
            keep = targets != -100
            picked = log_probs[keep].gather(-1, targets[keep][:, None])
            return -picked.mean()
        raise ValueError(mistake)

    return answer


register(Exercise(
    id="05.next_token_loss",
    function="next_token_loss",
    title="the next-token cross-entropy, shifted, with -100 ignored",
    reference=causal_lm_loss,
    cases=lambda: [
        Case("B=1, T=4, vocabulary of 5, labels = the input ids",
             (_randn(1, 4, 5, seed=0), _labels(1, 4, 5, seed=1)),
             hint="position t predicts labels[:, t + 1]: compare logits[:, :-1] with labels[:, 1:]"),
        Case("B=2, T=6, vocabulary of 7, some labels -100 (padding)", _padded_case(),
             hint="a -100 target is left out of the mean altogether: "
                  "F.cross_entropy(..., ignore_index=-100) does that"),
        Case("T=2: one prediction per row", (_randn(3, 2, 4, seed=4), _labels(3, 2, 4, seed=5))),
        Case("confident logits (60 x randn) and unlikely targets", _confident_case(),
             hint="probabilities like exp(-300) are 0 in float32: work with log_softmax, never log(softmax)"),
    ],
    compare=close_number("the loss", atol=1e-4, rtol=1e-5),
    mistakes=[
        Mistake(_loss_variant("no shift"),
                "no shift: logits at position t must be scored against the *next* token, labels[:, t + 1]; "
                "use logits[:, :-1] and labels[:, 1:]"),
        Mistake(_loss_variant("wrong direction"),
                "shifted the wrong way: logits[:, :-1] go with labels[:, 1:] (predict the next token, not "
                "the previous one)"),
        Mistake(_loss_variant("counts ignored"),
                "the -100 targets are counted in the mean: divide by the number of real targets only "
                "(F.cross_entropy(..., ignore_index=-100) does it for you)"),
        Mistake(_loss_variant("log of softmax"),
                "log(softmax(...)) gives log(0) = -inf for very unlikely tokens; F.cross_entropy (or "
                "F.log_softmax) computes the log-probabilities without that underflow"),
    ],
))
