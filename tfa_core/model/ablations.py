"""Ablations of the factored block: what each of its choices costs, one change at a time.

The factored block makes two choices a standard block does not: attention's values are ``xt`` alone
(so ``xt`` stays a mixture of token embeddings), and the MLP writes only ``xe`` (so nothing but
attention ever touches ``xt``). Each variant below undoes one of them and keeps everything else --
the slopes, the sizes, the parameter count -- so the study (``experiments/study.py``) can measure
what that choice costs in loss and what it buys in a readable ``xt``:

- ``FactoredALiBiMixedValues``: values from ``xt + xe``. Attention may now move what the MLPs
  computed from one position to another, as a standard block's attention can; ``xt`` stops being a
  mixture of token embeddings.
- ``FactoredALiBiOneStream``: the MLP writes ``xt`` too, so there is one stream (``xe`` stays zero)
  and the block is a standard pre-norm block whose values and output are the identity.

The third choice, no learned ``C x C`` value or output matrix, is ablated with the config's own
``use_v`` / ``use_proj`` flags (``H x H`` mixes); the study runs those as configurations of
``FactoredALiBi``.
"""

from __future__ import annotations

from tfa_core.model.factored import FactoredBlock, FactoredTransformer

__all__ = ["MixedValuesBlock", "OneStreamBlock", "FactoredALiBiMixedValues", "FactoredALiBiOneStream"]


class MixedValuesBlock(FactoredBlock):
    """Attention's values are ``xt + xe`` instead of ``xt``; the MLP still writes only ``xe``."""

    def forward(self, xt, xe, bias, cache=None):
        xt = xt + self.attn(self.ln_1(xt + xe), xt + xe, bias, cache)
        xe = xe + self.mlp(self.ln_2(xt + xe))
        return xt, xe


class OneStreamBlock(FactoredBlock):
    """The MLP writes ``xt`` as attention does; ``xe`` stays zero, so ``xt`` is the only stream."""

    def forward(self, xt, xe, bias, cache=None):
        xt = xt + self.attn(self.ln_1(xt + xe), xt, bias, cache)
        xt = xt + self.mlp(self.ln_2(xt + xe))
        return xt, xe


class FactoredALiBiMixedValues(FactoredTransformer):
    """``FactoredALiBi`` with values from ``xt + xe`` (registry name ``FactoredALiBiMixedValues``)."""

    block_class = MixedValuesBlock


class FactoredALiBiOneStream(FactoredTransformer):
    """``FactoredALiBi`` with the MLP writing ``xt`` (registry name ``FactoredALiBiOneStream``)."""

    block_class = OneStreamBlock
