"""Exercises of notebook 01, tokens and text: a character vocabulary, encode, decode, and the
input/target windows a causal language model learns from."""

from __future__ import annotations

import torch

from tfa_core.data.tokenizers import CharacterTokenizer
from .checking import Case, Exercise, Mistake, register
from .comparing import same_ids, same_text, same_tensor, same_vocabulary, tuple_of

# -- 01.build_vocab ----------------------------------------------------------------------------------


def reference_build_vocab(text: str) -> tuple[dict[str, int], list[str]]:
    """``(stoi, itos)`` with the ids of tfa_core's CharacterTokenizer: sorted characters, from 0."""
    characters = list(CharacterTokenizer(text).characters)
    return {c: i for i, c in enumerate(characters)}, characters


def _first_seen_order(text):
    characters = list(dict.fromkeys(text))
    return {c: i for i, c in enumerate(characters)}, characters


def _ids_from_one(text):
    stoi, itos = reference_build_vocab(text)
    return {c: i + 1 for c, i in stoi.items()}, itos


register(Exercise(
    id="01.build_vocab",
    function="build_vocab",
    title="a character vocabulary: stoi and itos",
    reference=reference_build_vocab,
    cases=lambda: [
        Case('text = "hello"', ("hello",)),
        Case('text = "To be, or not to be"', ("To be, or not to be",),
             hint="a space and a comma are characters too, and upper case sorts before lower case"),
        Case('text = "ba\\nab" (with a newline)', ("ba\nab",), hint="the newline is a character too"),
        Case('text = "aaaa" (one distinct character)', ("aaaa",)),
        Case('text = "Ωmega α" (not ASCII)', ("Ωmega α",),
             hint="sorted() orders characters by code point: 'Ω' and 'α' come after the ASCII ones"),
    ],
    compare=same_vocabulary,
    mistakes=[
        Mistake(_first_seen_order, "your ids follow the order in which characters first appear; "
                "tfa_core sorts them, so the ids do not depend on the text's order: sorted(set(text))"),
        Mistake(_ids_from_one, "your ids start at 1; they start at 0 (itos[0] is the first character)"),
    ],
))

# -- 01.encode -----------------------------------------------------------------------------------------


def _stoi(vocabulary_text: str) -> dict[str, int]:
    return reference_build_vocab(vocabulary_text)[0]


def reference_encode(text: str, stoi: dict[str, int]) -> list[int]:
    """The ids tfa_core's CharacterTokenizer gives (``stoi`` holds the same ids)."""
    return CharacterTokenizer("".join(stoi)).encode(text)


def _list_of_ids(expected: list[int], got) -> str | None:
    """``same_ids``, except that a tensor is refused: the exercise asks for a list, as the tokenizers
    return one, and a tensor (of any dtype) is told so in words, whatever the case."""
    if isinstance(got, torch.Tensor):
        return (f"expected a list of ints, got a tensor (dtype {str(got.dtype).replace('torch.', '')}): "
                "return a plain list, [stoi[c] for c in text], as tfa_core's tokenizers do; "
                "torch.tensor(...) comes later, when the ids become a batch")
    return same_ids(expected, got)


register(Exercise(
    id="01.encode",
    function="encode",
    title="characters to ids",
    reference=reference_encode,
    cases=lambda: [
        Case('encode("hello", stoi) with the vocabulary of "hello world"', ("hello", _stoi("hello world"))),
        Case('encode("world hello", stoi)', ("world hello", _stoi("hello world")),
             hint="every character gets an id, the space too"),
        Case('encode("", stoi): the empty text', ("", _stoi("hello world")),
             hint="no characters, no ids: return an empty list"),
        Case('encode("To be,\\nor not", stoi)', ("To be,\nor not", _stoi("To be,\nor not to be"))),
    ],
    compare=_list_of_ids,
    mistakes=[
        Mistake(lambda text, stoi: [stoi[c] + 1 for c in text],
                "your ids are one too high: look each character up in stoi, add nothing"),
        Mistake(lambda text, stoi: [stoi[c] for c in sorted(text)],
                "your ids are in sorted order; keep the order of the characters in the text"),
    ],
))

# -- 01.decode -----------------------------------------------------------------------------------------


def _itos(vocabulary_text: str) -> list[str]:
    return reference_build_vocab(vocabulary_text)[1]


def reference_decode(ids, itos: list[str]) -> str:
    """The text tfa_core's CharacterTokenizer gives for these ids."""
    return CharacterTokenizer(itos).decode(ids)


register(Exercise(
    id="01.decode",
    function="decode",
    title="ids back to text",
    reference=reference_decode,
    cases=lambda: [
        Case("decode([3, 2, 4, 4, 5], itos) with the vocabulary of \"hello world\"",
             ([3, 2, 4, 4, 5], _itos("hello world"))),
        Case("decode([], itos): no ids", ([], _itos("hello world")), hint="no ids, empty text: return \"\""),
        Case("decode(torch.tensor([7, 5, 6, 4, 1]), itos): ids in a tensor",
             (torch.tensor([7, 5, 6, 4, 1]), _itos("hello world")),
             hint="a tensor's entries are 0-d tensors; itos[int(i)] works for lists and tensors alike"),
        Case("decode(encode(text)) for a text with spaces and a newline",
             (reference_encode("To be,\nor not", _stoi("To be,\nor not to be")),
              _itos("To be,\nor not to be")),
             hint="join the characters with nothing in between: \"\".join(...)"),
    ],
    compare=same_text,
    mistakes=[
        Mistake(lambda ids, itos: " ".join(itos[int(i)] for i in ids),
                "you joined the characters with a space; join them with nothing: \"\".join(...)"),
        Mistake(lambda ids, itos: "".join(itos[int(i) - 1] for i in ids),
                "each character is one place off: itos[i] is the character with id i"),
    ],
))

# -- 01.windows ----------------------------------------------------------------------------------------


def reference_windows(tokens: torch.Tensor, start: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: ``block_size`` tokens from ``start``, and the same window one token later.

    tfa_core's batches carry ``labels == input_ids`` and :func:`tfa_core.causal_lm_loss` shifts
    them inside; this is the same pairing written out: position ``t`` of ``x`` predicts ``y[t]``.
    """
    window = tokens[start:start + block_size + 1]
    return window[:-1], window[1:]


def _tokens(n: int) -> torch.Tensor:
    return torch.arange(100, 100 + n)


register(Exercise(
    id="01.windows",
    function="input_target",
    title="input and target windows",
    reference=reference_windows,
    cases=lambda: [
        Case("tokens = 100, 101, ..., 119; start = 0; block_size = 4", (_tokens(20), 0, 4)),
        Case("tokens = 100, ..., 119; start = 7; block_size = 5", (_tokens(20), 7, 5)),
        Case("tokens = 100, ..., 119; start = 15; block_size = 4: the last window that fits",
             (_tokens(20), 15, 4),
             hint="y ends at the very last token: tokens[start + 1 : start + block_size + 1]"),
        Case("tokens = 100, ..., 109; start = 3; block_size = 1", (_tokens(10), 3, 1)),
    ],
    compare=tuple_of(("x", "y"), (same_tensor(("position",)), same_tensor(("position",)))),
    mistakes=[
        Mistake(lambda tokens, start, T: (tokens[start:start + T], tokens[start:start + T]),
                "y equals x: the target at position t is the *next* token, so y is x moved one to the right"),
        Mistake(lambda tokens, start, T: (tokens[start + 1:start + T + 1], tokens[start:start + T]),
                "x and y are swapped: x starts at `start`, y one token later"),
        Mistake(lambda tokens, start, T: (tokens[start:start + T], tokens[start + 1:start + T]),
                "y is one token short: it runs to tokens[start + block_size], inclusive"),
    ],
))
