"""Training throughput and model FLOPs utilisation on one CUDA GPU (bf16, torch.compile, FlexAttention).

    python benchmarks/cuda_throughput.py [--presets small,medium] [--batch-size 16] [--steps 30]
                                         [--peak-tflops 989]

For each preset it trains FactoredALiBi and Vanilla (GPT-2 BPE vocabulary, random tokens) for a few
steps after compiling, and prints tokens/s and MFU: the model's FLOPs per token (6 x parameters for
the matrices, plus 12 x layers x width x length for attention, as in the PaLM appendix) times tokens/s,
over the GPU's peak dense bf16 FLOP/s (--peak-tflops; default: a table of known GPUs, else 989).
Needs a GPU; on a CPU-only machine it says so and exits.
"""

import argparse
import sys
import time

import torch

from machine import describe_machine
from tfa_core import get_model, load_alibi_config_preset
from tfa_core.training.trainer import TrainingConfig, configure_optimizer

PEAK_BF16_TFLOPS = {"H100": 989, "H200": 989, "A100": 312, "L4": 121, "A10": 125, "4090": 165}


def flops_per_token(model, config) -> float:
    matrices = model.get_num_params(non_embedding=True) + config.vocab_size * config.n_embd  # + the LM head
    return 6 * matrices + 12 * config.n_layer * config.n_embd * config.block_size


def measure(preset: str, model_name: str, args, peak: float) -> str:
    """Train one model for a few steps and return its line of the table. The model, its optimizer and
    its compiled forward are locals here, so they are freed on return, before the next one is built."""
    config = load_alibi_config_preset(preset, vocab_size=50257, dropout=0.0)
    model = get_model(model_name, config).cuda()
    optimizer = configure_optimizer(model, TrainingConfig())
    forward = model if args.no_compile else torch.compile(model)
    batch = torch.randint(0, 50257, (args.batch_size, config.block_size), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = forward(batch, labels=batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    tokens_per_s = args.steps * args.batch_size * config.block_size / (time.perf_counter() - started)
    mfu = flops_per_token(model, config) * tokens_per_s / (peak * 1e12)
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    return (f"{preset:<7} {model_name:<14} {tokens_per_s:>12,.0f} tokens/s  MFU {mfu:6.1%}  "
            f"peak {peak_gib:5.1f} GiB  (first 3 steps with compilation: {warmup:.0f} s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="small,medium")
    parser.add_argument("--models", default="FactoredALiBi,Vanilla")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--peak-tflops", type=float)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    print(describe_machine())
    if not torch.cuda.is_available():
        print("no CUDA device here: this benchmark needs a GPU")
        return 0
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), 989)
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"peak bf16 {peak} TFLOP/s assumed; compile={not args.no_compile}")
    for preset in args.presets.split(","):
        for model_name in args.models.split(","):
            print(measure(preset, model_name, args, peak), flush=True)
            torch.cuda.empty_cache()  # the last model's memory, freed when measure returned
    return 0


if __name__ == "__main__":
    sys.exit(main())
