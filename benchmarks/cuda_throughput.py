"""Training throughput and model FLOPs utilisation on one CUDA GPU (bf16, torch.compile, FlexAttention).

    python benchmarks/cuda_throughput.py [--presets small,medium] [--batch-size 16] [--steps 30]
                                         [--peak-tflops 989] [--recipe cuda]

For each preset it trains FactoredALiBi and Vanilla (GPT-2 BPE vocabulary, random tokens) for a few
steps after compiling, and prints tokens/s and MFU: the model's FLOPs per token (6 x parameters for
the matrices, plus 12 x layers x width x length for attention, as in the PaLM appendix:
``tfa_core.training.resources.flops_per_token``) times tokens/s, over the GPU's peak dense bf16 FLOP/s
(--peak-tflops; default: a table of known GPUs, else 989).

``--recipe cuda`` then times the length-extrapolation study's own work as ``tfa extrapolate --recipe
cuda`` does it (the Trainer's step with the recipe's batch, dropout and bf16 autocast, uncompiled; one
model's whole evaluation, twice: with and without FlexAttention's compilations), counts FlexAttention's
compilations, and projects the study's wall time. Needs a GPU; on a CPU-only machine it says so and exits.
"""

import argparse
import sys
import time

import torch

from machine import describe_machine
from tfa_core import get_model, load_alibi_config_preset
from tfa_core.data.tokenizers import create_tokenizer
from tfa_core.experiments.evaluation import evaluate_length
from tfa_core.experiments.study import RECIPES, recipe_cost
from tfa_core.training.resources import flops_per_token
from tfa_core.training.trainer import Trainer, TrainingConfig, configure_optimizer

PEAK_BF16_TFLOPS = {"H100": 989, "H200": 989, "A100": 312, "L4": 121, "A10": 125, "4090": 165}


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
    mfu = flops_per_token(model_name, config) * tokens_per_s / (peak * 1e12)
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    return (f"{preset:<7} {model_name:<14} {tokens_per_s:>12,.0f} tokens/s  MFU {mfu:6.1%}  "
            f"peak {peak_gib:5.1f} GiB  (first 3 steps with compilation: {warmup:.0f} s)")


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(work, device: str) -> float:
    _synchronize(device)
    started = time.perf_counter()
    work()
    _synchronize(device)
    return time.perf_counter() - started


def project_recipe(recipe: str, steps: int, peak: float, device: str = "cuda") -> list[str]:
    """Time FactoredALiBi's training steps and its whole evaluation as the study runs them (random
    GPT-2 tokens: the time does not depend on the text), and project the study's wall time."""
    from torch._dynamo.utils import counters

    settings, cost = RECIPES[recipe], recipe_cost(recipe)
    config = load_alibi_config_preset(settings["preset"], block_size=settings["block_size"],
                                      max_position_embeddings=max(settings["lengths"]),
                                      dropout=settings.get("dropout", 0.0))
    config.update_from_tokenizer(create_tokenizer(settings["tokenizer"]))
    train = torch.randint(0, config.vocab_size, (cost["train_tokens"],))
    val = torch.randint(0, config.vocab_size, (settings["eval_tokens"] + 1,))
    trainer = Trainer(get_model("FactoredALiBi", config), train, None, TrainingConfig(
        max_steps=settings["steps"], batch_size=settings["batch_size"],
        learning_rate=settings["learning_rates"][1], warmup_steps=settings["warmup_steps"],
        weight_decay=settings.get("weight_decay", 0.1), device=device, progress=False))
    for _ in range(3):
        trainer.train_step()
    seconds = _timed(lambda: [trainer.train_step() for _ in range(steps)], device)
    tokens_per_s = steps * settings["batch_size"] * settings["block_size"] / seconds
    mfu = flops_per_token("FactoredALiBi", config) * tokens_per_s / (peak * 1e12)

    def evaluate():
        for length in settings["lengths"]:
            for mode in ("non_overlapping", "sliding"):
                evaluate_length(trainer.model, val, length, mode, tokens_scored=settings["eval_tokens"],
                                device=device)

    compiled_before = counters["frames"]["ok"]
    first = _timed(evaluate, device)  # with FlexAttention's compilations
    compilations = counters["frames"]["ok"] - compiled_before
    again = _timed(evaluate, device)
    train_s, compiling = cost["tokens"] / tokens_per_s, max(0.0, first - again)
    study_s = cost["runs"] * (train_s + again) + compiling  # every run evaluates as FactoredALiBi does
    return [f"{recipe} recipe, FactoredALiBi as the study runs it: training {tokens_per_s:,.0f} tokens/s "
            f"(batch {settings['batch_size']} x {settings['block_size']}, dropout {config.dropout}, "
            f"{'bf16' if trainer.uses_bf16 else 'fp32'}, uncompiled), MFU {mfu:.1%}; "
            f"{cost['tokens']:,} tokens in {train_s:.0f} s",
            f"  evaluation at {', '.join(map(str, settings['lengths']))}, both modes: {again:.1f} s "
            f"({first:.1f} s the first time, with {compilations} compilations of FlexAttention)",
            f"  projected study: {cost['runs']} runs x ({train_s:.0f} s + {again:.0f} s) + "
            f"{compiling:.0f} s of compilation = {study_s / 60:.1f} min "
            f"({cost['flops']:.2g} FLOPs: {cost['flops'] / study_s / 1e12:.0f} TFLOP/s over the whole run)"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="small,medium")
    parser.add_argument("--models", default="FactoredALiBi,Vanilla")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--peak-tflops", type=float)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--recipe", choices=sorted(RECIPES),
                        help="also time this extrapolation-study recipe and project its wall time")
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
    if args.recipe:
        print("\n".join(project_recipe(args.recipe, args.steps, peak)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
