"""The GPU memory each notebook's CUDA branch needs for training, as tfa_core.experiments.memory estimates
it (parameters, gradients, AdamW state, saved activations, the largest transient). Quoted in
docs/SETUP.md; rerun with ``python docs/gpu_memory.py``. Estimates, not measurements: the CUDA context
(about 0.5 GiB) and PyTorch's cache come on top."""

import tfa_core
from tfa_core.experiments.memory import estimate_training_memory, format_bytes
from tfa_core.experiments.study import RECIPES

GPT2_VOCAB = 50257
RUNS = {  # notebook: (what it trains on CUDA, preset, batch size, block size, precision)
    "01-05, 08 (largest)": ("character-level models, 4L-4H-128D at most", "character", 32, 128, "fp32"),
    "06_training": ("FactoredALiBi, GPT-2 BPE", "small", 32, 256, "bf16"),
    "07_length_extrapolation": ("seven models one after another, GPT-2 BPE", "small",
                                RECIPES["cuda"]["batch_size"], RECIPES["cuda"]["block_size"], "bf16"),
    "09_scaling_up (recipe)": ("FactoredALiBi, GPT-2 BPE", "small", 32, 256, "bf16"),
}

if __name__ == "__main__":
    print(f"{'notebook':<26} {'what':<44} {'batch x tokens':>14} {'estimate':>10}")
    for notebook, (what, preset, batch, block, precision) in RUNS.items():
        vocab = 81 if preset == "character" else GPT2_VOCAB
        config = tfa_core.load_alibi_config_preset(preset, vocab_size=vocab, block_size=block)
        estimate = estimate_training_memory(config, batch, block, precision=precision, device="cuda")
        total = estimate.total if hasattr(estimate, "total") else sum(
            getattr(estimate, part)
            for part in ("parameters", "gradients", "optimizer", "activations", "transient"))
        print(f"{notebook:<26} {what:<44} {f'{batch} x {block}':>14} {format_bytes(total):>10}")
