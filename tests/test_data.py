"""Tests for tfa_core.data.corpus: the Shakespeare corpus, Markdown stripping, splits and batches."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch

from tfa_core.data.corpus import (
    TokenWindowDataset,
    encode_corpus,
    load_shakespeare,
    load_text,
    markdown_stripped_by_default,
    prepare_causal_lm_dataset,
    random_batch,
    read_corpus,
    remove_markdown,
    shakespeare_files,
    train_val_split,
)
from tfa_core.data.tokenizers import CharacterTokenizer, create_tokenizer


@pytest.fixture(scope="module")
def shakespeare_markdown() -> str:
    return load_shakespeare()


@pytest.fixture(scope="module")
def shakespeare_plain() -> str:
    return load_shakespeare(strip_markdown=True)


@pytest.fixture(scope="module")
def macbeth_file():
    return next(path for path in shakespeare_files() if path.name == "macbeth.md")


# --------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------
def test_shakespeare_files():
    files = shakespeare_files()
    assert len(files) == 38
    assert files == sorted(files)
    assert all(path.suffix == ".md" and path.is_file() for path in files)
    assert {"macbeth.md", "hamlet.md", "the-tempest.md", "edward-iii.md"} <= {p.name for p in files}


def test_load_shakespeare_is_all_plays_in_order(shakespeare_markdown):
    assert 5_000_000 <= len(shakespeare_markdown) <= 5_600_000
    assert shakespeare_markdown.startswith("# A Midsummer Night's Dream\n")
    plays = [path.read_text(encoding="utf-8").rstrip("\n") for path in shakespeare_files()]
    assert shakespeare_markdown == "\n\n".join(plays) + "\n"


def test_strip_markdown_on_macbeth(macbeth_file):
    plain = remove_markdown(macbeth_file.read_text(encoding="utf-8"))
    assert plain.startswith(
        "Macbeth\n\nACT I\n\nSCENE I. A desert place.\n\n"
        "Thunder and lightning. Enter three Witches\n\n"
        "First Witch\nWhen shall we three meet again\nIn thunder, lightning, or in rain?\n\n"
    )
    lines = plain.split("\n")
    assert "**First Witch**  " not in lines and "First Witch" in lines
    assert "SCENE II. A camp near Forres." in lines  # was "### SCENE II. ..."
    # an italic stage direction spanning two lines
    assert (
        "\nAlarum within. Enter DUNCAN, MALCOLM, DONALBAIN, LENNOX, with Attendants,\n"
        "meeting a bleeding Sergeant\n"
    ) in plain


def test_strip_markdown_irregular_markup(shakespeare_plain):
    # A Midsummer Night's Dream has "__\[Awaking]_  ", The Merry Wives "[Within]_  ",
    # Edward III uses *single-star* italics with a stray space before the line break.
    assert "\nLYSANDER\n[Awaking]\nAnd run through fire" in shakespeare_plain
    assert "\nPAGE\n[Within]\nWho's there?" in shakespeare_plain
    assert "Enter King Edward, Derby, Prince Edward, Audley, and\nArtois.\n" in shakespeare_plain


def test_strip_markdown_leaves_no_markup_and_keeps_words(shakespeare_markdown, shakespeare_plain):
    assert 4_800_000 <= len(shakespeare_plain) <= 5_100_000
    for marker in ("**", "*", "_", "\\"):
        assert marker not in shakespeare_plain
    assert re.search(r"^#", shakespeare_plain, re.MULTILINE) is None
    assert re.search(r"[ \t]$", shakespeare_plain, re.MULTILINE) is None
    words = re.compile(r"[A-Za-z']+")
    assert words.findall(shakespeare_plain) == words.findall(
        re.sub(r"[*_#\\]", " ", shakespeare_markdown)
    )


def test_remove_markdown_keeps_underscores_and_stars_inside_words():
    assert remove_markdown("## Notes  \nsnake_case and 2*3 stay, _these_ go\n") == (
        "Notes\nsnake_case and 2*3 stay, these go\n"
    )


# --------------------------------------------------------------------------------------
# load_text
# --------------------------------------------------------------------------------------
def test_load_text_file(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("Shall I compare thee\nto a summer's day?\n", encoding="utf-8")
    assert load_text(path) == "Shall I compare thee\nto a summer's day?\n"
    assert load_text(str(path)) == "Shall I compare thee\nto a summer's day?\n"


PYTHON_SOURCE = (
    "class Shape:\n"
    "    def __init__(self, *args, **kwargs):  \n"  # two trailing spaces: Markdown's line break
    "        self.__dict__.update(**kwargs)\n"
    "\n"
    "## not a heading: a comment\n"
    "pattern = r\"\\[a-z_]+\\]\"  # backslash escapes are code too\n"
)


def test_python_source_is_read_byte_for_byte(tmp_path):
    path = tmp_path / "shape.py"
    path.write_bytes(PYTHON_SOURCE.encode("utf-8"))
    corpus = read_corpus(path)
    assert load_text(path) == corpus.text == PYTHON_SOURCE
    assert corpus.text.count("__init__") == 1 and corpus.text.count("**kwargs") == 2
    assert corpus.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert corpus.source == str(path.resolve()) and corpus.files == [path.resolve()]
    assert corpus.removed_characters == 0 and corpus.notes() == []
    # asked for, stripping rewrites the code, and says by how much
    stripped = read_corpus(path, strip_markdown=True)
    assert stripped.text == remove_markdown(PYTHON_SOURCE) and "__init__" not in stripped.text
    assert stripped.removed_characters == len(PYTHON_SOURCE) - len(stripped.text) == 21
    assert stripped.notes() == [f"Markdown stripping removed 21 characters from {path.resolve()} "
                                "(--keep-markdown, or strip_markdown=False, keeps them)"]


def test_a_file_of_any_suffix_is_read(tmp_path):
    for name in ("notes.rst", "Makefile", "data.csv"):
        (tmp_path / name).write_text(f"{name}\n", encoding="utf-8")
        assert load_text(tmp_path / name) == f"{name}\n"


def test_markdown_is_stripped_by_default_only_for_shakespeare(tmp_path):
    assert markdown_stripped_by_default("shakespeare") is True
    assert markdown_stripped_by_default("plays.md") is False
    assert markdown_stripped_by_default(tmp_path) is False


def test_load_text_folder(tmp_path):
    (tmp_path / "b.md").write_text("**Second**  \nB\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("C", encoding="utf-8")
    (tmp_path / "a.txt").write_text("A\n\n", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # binary: left out
    assert load_text(tmp_path) == "A\n\n**Second**  \nB\n\nC\n"
    assert load_text(tmp_path, strip_markdown=True) == "A\n\nSecond\nB\n\nC\n"


def test_a_folder_reads_every_text_file_and_says_what_it_left_out(tmp_path):
    (tmp_path / "shape.py").write_text(PYTHON_SOURCE, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("notes\n", encoding="utf-8")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "README").write_text("read me\n", encoding="utf-8")  # no suffix: read
    (tmp_path / "pkg" / "model.bin").write_bytes(bytes(range(256)) * 64)  # NUL bytes: binary
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))  # not UTF-8
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]\n", encoding="utf-8")  # hidden folder
    (tmp_path / ".env").write_text("SECRET=1\n", encoding="utf-8")  # hidden file
    corpus = read_corpus(tmp_path)
    assert [file.relative_to(tmp_path).as_posix() for file in corpus.files] == [
        "notes.txt", "pkg/README", "shape.py"]
    assert corpus.text == "notes\n\nread me\n\n" + PYTHON_SOURCE
    assert corpus.text.count("__init__") == 1 and corpus.text.count("**kwargs") == 2
    assert corpus.skipped == ["latin1.txt: not UTF-8", "pkg/model.bin: binary"]
    assert corpus.hidden == [".git", ".env"]
    assert corpus.notes() == [f"read 3 text file(s) from {tmp_path.resolve()}; skipped 2: latin1.txt: not "
                              "UTF-8, pkg/model.bin: binary; left out 2 hidden: .git, .env"]


def test_load_text_shakespeare_name(shakespeare_plain):
    assert load_text("shakespeare", strip_markdown=True) == shakespeare_plain
    corpus = read_corpus("shakespeare", strip_markdown=True)
    assert corpus.source == "shakespeare" and len(corpus.files) == 38 and corpus.notes() == []


def test_load_text_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        load_text(tmp_path / "nowhere.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty has no text files to read; put UTF-8 text files in it"):
        load_text(tmp_path / "empty")
    (tmp_path / "binaries").mkdir()
    (tmp_path / "binaries" / "weights.bin").write_bytes(b"\x00\x01")
    with pytest.raises(ValueError, match=r"no text files to read \(skipped 1: weights.bin: binary\)"):
        load_text(tmp_path / "binaries")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt is not UTF-8"):
        load_text(latin1)
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("text".encode("utf-16-le"))  # decodes as UTF-8, with a NUL after each letter
    with pytest.raises(ValueError, match="utf16.txt holds NUL bytes: it is binary, or text saved as UTF-16"):
        load_text(utf16)
    with pytest.raises(TypeError, match="path must be"):
        load_text(42)


def test_the_study_trains_on_your_text_as_it_is(tmp_path, monkeypatch, capsys):
    from tfa_core.experiments import study
    from tfa_core.training.checkpoint import load_checkpoint

    path = tmp_path / "shape.py"
    path.write_text(PYTHON_SOURCE * 40, encoding="utf-8")
    monkeypatch.setitem(study.RECIPES, "tiny", dict(
        tokenizer="character", preset="character", block_size=16, steps=1, batch_size=2,
        learning_rates=[1e-3], seeds=[0], warmup_steps=1, lengths=[16], eval_tokens=64,
        config_overrides=dict(n_layer=1, n_embd=16)))
    vocabularies = {}
    for strip in (None, True):
        out = tmp_path / f"study-{strip}"
        study.run_extrapolation_study(out, recipe="tiny", models=["FactoredALiBi"], data=str(path),
                                      device="cpu", progress=False, strip_markdown=strip, ablations=False)
        saved = load_checkpoint(study.chosen_checkpoint(out, "FactoredALiBi"), training_state=False)
        vocabularies[strip] = "".join(saved.tokenizer.characters)
    assert vocabularies[None] == "".join(sorted(set(PYTHON_SOURCE)))  # '*', '#', '\\' and '_' kept
    assert vocabularies[True] == "".join(sorted(set(remove_markdown(PYTHON_SOURCE * 40))))
    assert "*" not in vocabularies[True]
    removed = len(PYTHON_SOURCE * 40) - len(remove_markdown(PYTHON_SOURCE * 40))
    assert f"Markdown stripping removed {removed:,} characters" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------
def test_train_val_split_string_and_list():
    assert train_val_split("abcdefghij", val_fraction=0.2) == ("abcdefgh", "ij")
    assert train_val_split(list(range(10))) == (list(range(9)), [9])


def test_train_val_split_tensor():
    tokens = torch.arange(1000) * 7
    train, val = train_val_split(tokens, val_fraction=0.1)
    assert (len(train), len(val)) == (900, 100)
    assert torch.equal(torch.cat([train, val]), tokens)
    assert train[-1].item() == 899 * 7 and val[0].item() == 900 * 7


def test_train_val_split_errors():
    for fraction in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="val_fraction must be between 0 and 1"):
            train_val_split("abcdefghij", fraction)
    with pytest.raises(ValueError, match="3 items: too short"):
        train_val_split("abc", 0.1)
    with pytest.raises(ValueError, match="1-D"):
        train_val_split(torch.zeros(4, 4), 0.5)
    with pytest.raises(TypeError, match="data must be"):
        train_val_split({"a": 1}, 0.5)


# --------------------------------------------------------------------------------------
# Windows and batches
# --------------------------------------------------------------------------------------
@pytest.fixture
def letters() -> CharacterTokenizer:
    return CharacterTokenizer("abcdefghij")  # "a".."j" -> 0..9, end-of-text -> 10


def test_dataset_windows_and_end_of_text_between_documents(letters):
    loader = prepare_causal_lm_dataset(
        ["abcdefghij", "jihgfedcba"], letters, block_size=4, batch_size=2, shuffle=False
    )
    # stream: 0..9, 10 (end of text), 9..0 -> 21 tokens -> (21 - 4) // 4 + 1 = 5 windows
    assert len(loader.dataset) == 5
    batches = list(loader)
    assert [len(batch["input_ids"]) for batch in batches] == [2, 2, 1]
    assert batches[0]["input_ids"].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert batches[1]["input_ids"].tolist() == [[8, 9, 10, 9], [8, 7, 6, 5]]
    assert batches[2]["input_ids"].tolist() == [[4, 3, 2, 1]]
    for batch in batches:
        assert batch["input_ids"].dtype == torch.int64
        assert torch.equal(batch["labels"], batch["input_ids"])


def test_dataset_stride_and_drop_last(letters):
    loader = prepare_causal_lm_dataset(
        "abcdefghij", letters, block_size=4, batch_size=2, shuffle=False, stride=2, drop_last=True
    )
    # 10 tokens, windows at 0, 2, 4, 6 -> 4 windows -> 2 full batches
    windows = torch.cat([batch["input_ids"] for batch in loader])
    assert windows.tolist() == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]


def test_dataset_shuffle_is_seeded_and_complete(letters):
    def window_order(seed):
        loader = prepare_causal_lm_dataset(
            "abcdefghij" * 4, letters, block_size=4, batch_size=3, seed=seed, stride=1
        )
        return [tuple(row) for batch in loader for row in batch["input_ids"].tolist()]

    first, again, other = window_order(0), window_order(0), window_order(1)
    assert first == again
    assert first != other
    dataset = TokenWindowDataset(letters.encode("abcdefghij" * 4), block_size=4, stride=1)
    assert sorted(first) == sorted(tuple(dataset[i]["input_ids"].tolist()) for i in range(37))


def test_dataset_with_gpt2_first_window_is_first_tokens():
    gpt2 = create_tokenizer("gpt2")
    text = "When shall we three meet again\nIn thunder, lightning, or in rain?\n" * 3
    tokens = gpt2.encode(text)
    loader = prepare_causal_lm_dataset(text, gpt2, block_size=8, batch_size=4, shuffle=False)
    assert len(loader.dataset) == len(tokens) // 8
    first = next(iter(loader))
    assert first["input_ids"].shape == (4, 8)
    assert first["input_ids"][0].tolist() == tokens[:8]
    assert first["input_ids"][1].tolist() == tokens[8:16]


def test_dataset_argument_errors(letters):
    with pytest.raises(ValueError, match="only 10 tokens.*block_size=11"):
        prepare_causal_lm_dataset("abcdefghij", letters, block_size=11, batch_size=1)
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        prepare_causal_lm_dataset("abcdefghij", letters, block_size=0, batch_size=1)
    with pytest.raises(ValueError, match=r"stride \(5\) must be at most block_size \(4\)"):
        prepare_causal_lm_dataset("abcdefghij", letters, block_size=4, batch_size=1, stride=5)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        prepare_causal_lm_dataset("abcdefghij", letters, block_size=4, batch_size=2.0)
    with pytest.raises(ValueError, match="only 2 windows.*drop_last"):
        prepare_causal_lm_dataset("abcdefghij", letters, block_size=4, batch_size=3, drop_last=True)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        prepare_causal_lm_dataset(["abc", 5], letters, block_size=2, batch_size=1)


def test_encode_corpus(letters):
    tokens = encode_corpus("jab", letters)
    assert tokens.dtype == torch.int64
    assert tokens.tolist() == [9, 0, 1]


def test_random_batch_windows_are_contiguous_slices():
    tokens = torch.arange(1000) * 3
    generator = torch.Generator().manual_seed(0)
    batch = random_batch(tokens, block_size=16, batch_size=8, generator=generator)
    assert batch["input_ids"].shape == batch["labels"].shape == (8, 16)
    assert batch["input_ids"].dtype == torch.int64
    assert torch.equal(batch["labels"], batch["input_ids"])
    # each row is tokens[start : start + 16], with start drawn by the same seeded generator
    starts = torch.randint(0, 1000 - 16 + 1, (8,), generator=torch.Generator().manual_seed(0))
    expected = torch.stack([tokens[s : s + 16] for s in starts.tolist()])
    assert torch.equal(batch["input_ids"], expected)


def test_random_batch_is_reproducible_and_covers_the_end():
    tokens = torch.tensor([5, 1, 4, 1, 5, 9, 2, 6], dtype=torch.int32)
    one = random_batch(tokens, 3, 64, generator=torch.Generator().manual_seed(7))
    two = random_batch(tokens, 3, 64, generator=torch.Generator().manual_seed(7))
    assert torch.equal(one["input_ids"], two["input_ids"])
    assert one["input_ids"].dtype == torch.int64
    windows = {tuple(row) for row in one["input_ids"].tolist()}
    all_windows = {tuple(tokens[s : s + 3].tolist()) for s in range(6)}
    assert windows == all_windows  # 64 draws from 6 windows: all seen, incl. the last one
    whole = random_batch(tokens, 8, 2)
    assert whole["input_ids"].tolist() == [tokens.tolist()] * 2


def test_random_batch_errors():
    with pytest.raises(ValueError, match="only 4 tokens.*block_size=5"):
        random_batch(torch.arange(4), block_size=5, batch_size=1)
    with pytest.raises(TypeError, match="integer ids"):
        random_batch(torch.rand(10), block_size=2, batch_size=1)
    with pytest.raises(ValueError, match="1-D"):
        random_batch(np.zeros((2, 5), dtype=np.int64), block_size=2, batch_size=1)
