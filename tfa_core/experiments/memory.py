"""How much memory training takes: an estimate from the config, and the measurements that check it.

One training step of ``FactoredALiBi`` holds, at its peak (``P`` parameters in ``n`` tensors):

==============  ==================  ============================================================
part            bytes               why
==============  ==================  ============================================================
parameters      ``4 P``             fp32 weights; bf16 autocast keeps them in fp32
gradients       ``4 P``             one fp32 gradient per weight
optimizer       ``8 P + 4 n``       AdamW's ``exp_avg`` and ``exp_avg_sq`` (fp32), and a 0-d fp32
                                    ``step`` per parameter tensor
activations     :func:`activation_breakdown`: what the forward pass saves for the backward pass
transient       ``8 B (T-1) V``     the fp32 gradients of the log-probabilities and of the logits,
                                    alive together at the start of the backward pass; with
                                    checkpointing, plus one block's activations, recomputed
==============  ==================  ============================================================

The first three are exact. The activation count follows, tensor by tensor, what PyTorch 2.13 saves
in eager mode (``tests/test_memory.py`` checks it on a CPU against :func:`saved_activation_bytes`);
its assumptions:

- eager PyTorch: ``torch.compile`` may save less, recomputing cheap operations such as GELU;
- the attention kernel the model runs (see :func:`attention_kernel`):
  a fused kernel saves ``q``, ``k``, ``v``, its output and one log-sum-exp per query and head, never
  the ``T x T`` weights; PyTorch's CPU kernel cannot drop out attention weights, so with dropout on
  a CPU the "math" path stores three ``B x H x T x T`` tensors;
- dropout masks are one byte per element on CUDA (bool) and one element of the dropped tensor's
  dtype on a CPU;
- FlexAttention (CUDA without dropout) saves what a fused kernel saves, without the bias: under
  autocast, torch 2.13 casts its ``q``, ``k`` and ``v`` to bf16 before it runs;
- past ``tfa_core.model.fast_attention.QUERY_BLOCK`` tokens, the query blocks of the speed room
  (:func:`attention_blocks`): the blocks' biases (shared by the layers) and what each block copies
  or casts;
- on CUDA (FlexAttention, and every figure on a GPU) the count is not yet checked against
  ``torch.cuda.max_memory_allocated``: no GPU was available where it was written.

The total adds every gradient to every activation, although gradients appear while activations are
freed: an upper bound rather than a prediction of the last megabyte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tfa_core.model import fast_attention as attention_paths
from tfa_core.model.parameters import estimate_model_parameters
from tfa_core.model.checks import is_int

__all__ = [
    "MemoryEstimate",
    "estimate_training_memory",
    "activation_breakdown",
    "attention_kernel",
    "adamw_state_bytes",
    "largest_batch_that_fits",
    "saved_activation_bytes",
    "optimizer_state_bytes",
    "cuda_peak_step_bytes",
    "GPU_MEMORY",
    "format_bytes",
]

FP32 = 4  # bytes per float32 element
INT64 = 8

GPU_MEMORY = {"24 GB": 24 * 2**30, "80 GB": 80 * 2**30}
"""Memory of two common cards (an RTX 3090/4090 and an A100/H100 80 GB), in bytes: their "GB" are GiB."""

HEADROOM = 0.10
"""Fraction of a card's memory left for the CUDA context, cuBLAS workspaces and fragmentation."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of each part of one training step; ``activation_parts`` itemises ``activations``."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int
    transient: int
    activation_parts: dict = field(default_factory=dict, compare=False)

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations + self.transient

    def fits(self, capacity: int, headroom: float = HEADROOM) -> bool:
        """Whether the total fits in ``capacity`` bytes, keeping ``headroom`` of it free."""
        return self.total <= (1 - headroom) * capacity


# -- checks --------------------------------------------------------------------------------------

def _check(config, batch_size, block_size, precision, device) -> tuple[int, int]:
    from tfa_core.model.config import GPTConfigALiBi

    if not isinstance(config, GPTConfigALiBi):
        raise TypeError(f"config must be a GPTConfigALiBi, got {type(config).__name__}")
    if config.model_type != "FactoredALiBi" or config.position_scheme not in (None, "alibi"):
        raise ValueError(f"the estimate follows the FactoredALiBi model; config.model_type is "
                         f"{config.model_type!r} with position_scheme {config.position_scheme!r}")
    if config.vocab_size is None:
        raise ValueError("config.vocab_size is not set; call config.update_from_tokenizer(tokenizer) first")
    batch_size = config.batch_size if batch_size is None else batch_size
    block_size = config.block_size if block_size is None else block_size
    for name, value, low in (("batch_size", batch_size, 1), ("block_size", block_size, 2)):
        if not is_int(value) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if block_size > config.max_position_embeddings:
        raise ValueError(f"block_size {block_size} is longer than the model accepts "
                         f"(max_position_embeddings={config.max_position_embeddings})")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16' (autocast, as the Trainer uses on CUDA), "
                         f"got {precision!r}")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu' (it decides the attention kernel), got {device!r}")
    return batch_size, block_size


def attention_kernel(config, device: str) -> str:
    """Which attention the model runs while training: ``"flex"`` (CUDA, no dropout),
    ``"fused"`` (a fused SDPA kernel with the dense ``(1, H, T, T)`` bias: CUDA with dropout, or a
    CPU without), or ``"math"`` (a CPU with dropout: PyTorch's fallback that stores the weights)."""
    if device == "cuda":
        return "flex" if config.dropout == 0 else "fused"
    return "fused" if config.dropout == 0 else "math"


def attention_blocks(T: int, n_head: int, itemsize: int) -> tuple[int, int]:
    """How ``tfa_core.model.fast_attention`` splits the queries of one training sequence with ALiBi: the
    ``(query, key)`` scores one head computes (its bias holds one element each) and the keys its
    blocks read together (each block reads the keys up to its last query); ``T²`` and ``T`` for one
    fused call."""
    if not attention_paths.uses_query_blocks(T, T, biased=True):
        return T * T, T
    rows = attention_paths.query_block_rows(T, n_head, itemsize, attention_paths.QUERY_BLOCK)
    blocks = attention_paths.query_blocks(T, T, rows)
    return sum((end - start) * seen for start, end, seen in blocks), sum(seen for *_, seen in blocks)


# -- the estimate ----------------------------------------------------------------------------------

def adamw_state_bytes(n_parameters: int, n_tensors: int) -> int:
    """AdamW's state: two fp32 moments per parameter and a 0-d fp32 ``step`` per parameter tensor."""
    return 2 * FP32 * n_parameters + FP32 * n_tensors


def _parameter_tensors(config) -> int:
    """How many parameter tensors the model has (the tied embedding counts once)."""
    per_block = 5 * (1 + int(config.bias)) + int(config.use_v) + int(config.use_proj)
    return 1 + config.n_layer * per_block + (1 + int(config.bias))  # wte, blocks, ln_f


def activation_breakdown(config, batch_size: int | None = None, block_size: int | None = None, *,
                         precision: str = "fp32", checkpointing: bool = False,
                         device: str = "cuda") -> dict[str, int]:
    """Bytes saved for the backward pass, by part: ``blocks`` (all of them), ``attention bias``,
    ``embedding``, ``output and loss``, and ``bf16 weight copies`` (autocast's casts of every matrix,
    saved for the backward pass).

    With ``N = B T`` tokens, ``c`` bytes per element in the compute dtype (4, or 2 under bf16
    autocast) and ``m`` bytes per dropout-mask element, one block saves::

        2 N C 4          ln_1 and ln_2 inputs (xt + xe: the streams stay fp32)
        4 N 4            each LayerNorm's mean and 1/std
        2 N C c          the two LayerNorm outputs, as inputs of c_attn and c_fc
        4 N C c + N H 4  attention (fused kernel): q and k, v (xt), output, log-sum-exp
        8 N C c          the MLP's 4C-wide hidden layer, before and after GELU
        N C c            each H x H channel mix (use_v, use_proj): its input
        2 N C m          with dropout: the masks after attention and after the MLP

    With ``checkpointing`` a block keeps only its inputs ``xt`` and ``xe`` (``2 N C 4``) and the
    dense bias all blocks share (kept once, under ``attention bias``), and recomputes the rest during
    the backward pass. Outside the blocks: the token ids (``8 N``), the
    final LayerNorm (``N C 4 + 8 N``) and its output (``N C c``), the log-probabilities that
    cross-entropy keeps (``B (T-1) V 4``) and the targets.
    """
    return _activations(config, batch_size, block_size, precision, checkpointing, device)[0]


def _activations(config, batch_size, block_size, precision, checkpointing, device) -> tuple[dict, int]:
    """The parts of :func:`activation_breakdown`, and what one block saves when it runs without
    checkpointing (the bytes a checkpointed block recomputes during the backward pass)."""
    B, T = _check(config, batch_size, block_size, precision, device)
    N, C, H, L, V = B * T, config.n_embd, config.n_head, config.n_layer, config.vocab_size
    bf16 = precision == "bf16"
    c = 2 if bf16 else FP32
    dropout = config.dropout > 0
    kernel = attention_kernel(config, device)
    mixes = int(config.use_v) + int(config.use_proj)

    def mask_bytes(element: int) -> int:  # bool on CUDA; the dropped tensor's dtype on a CPU
        return (1 if device == "cuda" else element) * N * C if dropout else 0

    # per head and batch row: scores (and bias elements), keys read; query blocks past QUERY_BLOCK
    scores, keys_read = attention_blocks(T, H, c) if kernel != "flex" else (T * T, T)
    if kernel == "math":  # fp32 copies of q, k, v and three B x H x T x T tensors, whatever the dtype
        # (in query blocks: each block copies its queries and the keys and values it reads)
        attention = (T + 2 * keys_read) * B * C * FP32 + 3 * B * H * scores * FP32
    else:  # fused and flex: q and k (one tensor), v (xt, cast), the output, a log-sum-exp per query
        attention = 4 * N * C * c + N * H * FP32
    bias = H * scores * c if kernel == "fused" else 0  # shared by every layer, in one call or in blocks
    # with checkpointing the one dense bias of a CPU forward pass is every block's saved input (whatever
    # the kernel); the speed room's biases (query blocks, and every biased input on CUDA) are not
    dense = device != "cuda" and not attention_paths.uses_query_blocks(T, T, True)
    checkpointed_bias = H * scores * c if dense else 0
    block = (2 * N * C * FP32 + 4 * N * FP32 + 2 * N * C * c + attention + 8 * N * C * c
             + mixes * N * C * c + 2 * mask_bytes(c))
    block_weights = 2 * (10 * C * C + mixes * H * H) if bf16 else 0
    parts = {
        "blocks": L * (2 * N * C * FP32 if checkpointing else block),
        "attention bias": checkpointed_bias if checkpointing else bias,
        "embedding": INT64 * N + mask_bytes(FP32),
        "output and loss": N * C * FP32 + 2 * N * FP32 + N * C * c + B * (T - 1) * (V * FP32 + INT64) + FP32,
        "bf16 weight copies": (2 * V * C if bf16 else 0) + (0 if checkpointing else L * block_weights),
    }
    return parts, block + block_weights + bias


def estimate_training_memory(config, batch_size: int | None = None, block_size: int | None = None, *,
                             precision: str = "fp32", checkpointing: bool = False,
                             device: str = "cuda") -> MemoryEstimate:
    """Estimate the memory of one AdamW training step of ``FactoredALiBi`` built from ``config``,
    on ``batch_size`` windows (default ``config.batch_size``) of ``block_size`` tokens (default
    ``config.block_size``). ``precision`` is ``"fp32"`` or ``"bf16"`` (autocast, what the Trainer
    uses on CUDA); ``checkpointing`` is ``model.gradient_checkpointing_enable()``; ``device``
    (``"cuda"`` or ``"cpu"``) decides the attention kernel and the dropout masks. See the module's
    docstring for the formula and its assumptions."""
    parts, one_block = _activations(config, batch_size, block_size, precision, checkpointing, device)
    B, T = _check(config, batch_size, block_size, precision, device)
    P = estimate_model_parameters(config)
    transient = 2 * B * (T - 1) * config.vocab_size * FP32 + (one_block if checkpointing else 0)
    return MemoryEstimate(parameters=FP32 * P, gradients=FP32 * P,
                          optimizer=adamw_state_bytes(P, _parameter_tensors(config)),
                          activations=sum(parts.values()), transient=transient, activation_parts=parts)


def largest_batch_that_fits(config, capacity: int, block_size: int | None = None, *,
                            headroom: float = HEADROOM, limit: int = 1 << 16, **options) -> int:
    """The largest batch whose estimate fits in ``capacity`` bytes (0 if not even one window fits).
    ``options`` go to :func:`estimate_training_memory`."""
    def fits(batch):
        return estimate_training_memory(config, batch, block_size, **options).fits(capacity, headroom)

    if not fits(1):
        return 0
    low, high = 1, limit  # fits(low) holds; find the last batch that fits, up to limit
    if fits(high):
        return high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


# -- measurements ----------------------------------------------------------------------------------

def saved_activation_bytes(model, input_ids: torch.Tensor, precision: str = "fp32") -> int:
    """Run one training forward pass (``labels = input_ids``) and count the bytes of every tensor
    autograd saves for the backward pass, through ``torch.autograd.graph.saved_tensors_hooks``.

    Each storage is counted once (``q`` and ``k`` are two views of one tensor; every layer shares
    one ALiBi bias), and parameters are left out: they are memory anyway. Under gradient
    checkpointing, the checkpoint's own hooks take over inside each block, so what is counted is
    what the checkpoint really keeps. Works on any device; the model should be in training mode.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids, labels=input_ids)["loss"]
    del loss  # frees the graph and what it saved
    return sum(saved.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer's state (after at least one step)."""
    return sum(value.untyped_storage().nbytes() for state in optimizer.state.values()
               for value in state.values() if isinstance(value, torch.Tensor))


def cuda_peak_step_bytes(model, optimizer, input_ids: torch.Tensor, precision: str = "bf16") -> int:
    """Peak CUDA memory (``torch.cuda.max_memory_allocated``) of one full training step, measured
    on the second step so that the optimizer state already exists. ``model`` and ``input_ids`` must
    be on a CUDA device."""
    if input_ids.device.type != "cuda":
        raise ValueError(f"cuda_peak_step_bytes measures CUDA memory: input_ids is on {input_ids.device}; "
                         "on a CPU use saved_activation_bytes")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids, labels=input_ids)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def format_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``; powers of 1024, three significant figures."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
