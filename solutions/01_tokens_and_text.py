"""Reference answers to the exercises of course/01_tokens_and_text.ipynb."""


def build_vocab(text):
    """(stoi, itos): the sorted distinct characters of `text`, numbered from 0."""
    itos = sorted(set(text))
    stoi = {character: i for i, character in enumerate(itos)}
    return stoi, itos


def encode(text, stoi):
    """The id of every character of `text`, in order."""
    return [stoi[character] for character in text]


def decode(ids, itos):
    """The characters of `ids`, joined with nothing in between."""
    return "".join(itos[int(i)] for i in ids)


def input_target(tokens, start, block_size):
    """x: `block_size` tokens from `start`; y: the same window one token later."""
    x = tokens[start : start + block_size]
    y = tokens[start + 1 : start + block_size + 1]
    return x, y
