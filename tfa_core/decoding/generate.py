"""Decoding: sampled token ids one step at a time, with or without the key/value cache, and streamed
as text.

``generate_tokens`` is the loop behind ``model.generate``; ``stream_generate`` turns the same loop
into text pieces that can be printed as they arrive.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

import torch

from tfa_core.decoding.sampling import check_sampling_args, sample_next_token
from tfa_core.model.checks import is_int

__all__ = ["generate_tokens", "stream_generate", "TokenDecoder"]


@torch.no_grad()
def generate_tokens(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(next_id, logits)`` for each of ``max_new_tokens`` steps after ``idx`` (``(B, T)``):
    the sampled ids ``(B, 1)`` and the logits ``(B, V)`` they were sampled from.

    See ``model.generate`` for the sampling settings and ``use_cache``; put the model in eval mode
    first (``generate`` and :func:`stream_generate` do).
    """
    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    check_sampling_args(temperature, top_k, top_p)
    limit = model.max_sequence_length
    model.check_inputs(idx[:, -limit:] if idx.dim() == 2 else idx)
    # the cache never needs more room than the prompt and the new tokens
    cache = model.new_kv_cache(min(limit, idx.shape[1] + max_new_tokens)) if use_cache else None
    for _ in range(max_new_tokens):
        logits = _next_token_logits(model, idx, cache)  # (B, V)
        next_id = sample_next_token(logits, temperature, top_k, top_p, generator)  # (B, 1)
        idx = torch.cat([idx, next_id], dim=1)
        yield next_id, logits


def _next_token_logits(model, idx: torch.Tensor, cache) -> torch.Tensor:
    """Logits ``(B, V)`` for the token after ``idx`` (``(B, T)``), seeing the last
    ``max_sequence_length`` tokens.

    With a cache, it holds every token of ``idx`` but the newest, so only the newest is run. An empty
    cache is filled from the window; so is a full one, because sliding the window by one token changes
    every cached key and value (each was computed with the token that now drops out in its context).
    """
    window = idx[:, -model.max_sequence_length:]  # (B, <= max_sequence_length)
    if cache is None:
        return model(window)["logits"][:, -1, :]
    if cache.length in (0, cache.capacity):
        cache.reset()
        return model(window, past_key_values=cache)["logits"][:, -1, :]
    return model(idx[:, -1:], past_key_values=cache)["logits"][:, -1, :]


class TokenDecoder:
    """Turns token ids into text one id at a time, for streaming.

    A GPT-2 token is a run of bytes, and a character of several UTF-8 bytes (``"é"``, an emoji) can be
    split across tokens; decoding such a token alone gives the replacement character U+FFFD. Here the
    bytes go through an incremental UTF-8 decoder instead, which holds back an unfinished character
    until its last byte arrives, so the pieces joined equal ``tokenizer.decode`` of all the ids.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """The text that ``token_id`` completes; ``""`` while a character is still unfinished."""
        return self._utf8.decode(self._token_bytes(token_id))

    def flush(self) -> str:
        """Whatever is held back at the end (U+FFFD for a character that never completed)."""
        return self._utf8.decode(b"", final=True)

    def _token_bytes(self, token_id: int) -> bytes:
        encoding = getattr(self.tokenizer, "tiktoken_encoding", None)  # byte-level BPE (GPT-2)
        if encoding is not None:
            return encoding.decode_single_token_bytes(token_id)
        return self.tokenizer.decode([token_id]).encode("utf-8")  # whole characters (character level)


def stream_generate(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
) -> Iterator[str]:
    """Continue ``prompt`` and yield the new text piece by piece, as each token is sampled::

        for piece in stream_generate(model, tokenizer, "ROMEO:", 200, temperature=0.8, seed=0):
            print(piece, end="", flush=True)

    A character split across tokens is yielded once complete (never as U+FFFD mid-stream); the
    pieces joined equal ``tokenizer.decode`` of the new ids. ``seed`` makes sampling reproducible
    (a ``torch.Generator`` seeded with it, the same stream as ``model.generate(..., generator=...)``);
    ``None`` uses torch's global random state. The model is in eval mode while the stream runs and
    gets its mode back when the stream ends or is closed.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("prompt is empty: give at least one character to continue (for example \"\\n\")")
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    decoder = TokenDecoder(tokenizer)
    was_training = model.training
    model.eval()
    try:
        for next_id, _ in generate_tokens(model, idx, max_new_tokens, temperature, top_k, top_p,
                                          generator, use_cache):
            piece = decoder.push(int(next_id))
            if piece:
                yield piece
        rest = decoder.flush()
        if rest:
            yield rest
    finally:
        model.train(was_training)
