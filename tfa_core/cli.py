"""The ``tfa`` command line: train, generate, evaluate and inspect runs.

    tfa train --preset character --data shakespeare --steps 600 --out runs/char
    tfa generate runs/char --prompt "ROMEO:" --max-new-tokens 200
    tfa evaluate runs/char
    tfa info runs/char
    tfa extrapolate --recipe cpu --out runs/study

``torchrun --nproc_per_node=N -m tfa_core.cli train ...`` trains on N processes (DDP). Mistakes (a
missing file, a bad value, a run without checkpoints) end with one line on stderr and exit code 2;
set ``TFA_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch

__all__ = ["main", "main_exit", "build_parser"]


class CommandError(Exception):
    """A mistake in how the command was used: reported in one line."""


# -- train -----------------------------------------------------------------------------------

def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    model = p.add_argument_group("model")
    model.add_argument("--preset", default="character", help="small, medium, large or character (default)")
    model.add_argument("--model", default="FactoredALiBi", help="registry name (default FactoredALiBi)")
    model.add_argument("--n-layer", type=int)
    model.add_argument("--n-head", type=int)
    model.add_argument("--n-embd", type=int)
    model.add_argument("--dropout", type=float)
    model.add_argument("--block-size", "--block_size", type=int, help="training length")
    model.add_argument("--max-position-embeddings", "--max_position_embeddings", type=int,
                       help="longest input the model accepts (default 4 x block size)")
    model.add_argument("--use-v", action="store_true", help="learned H x H value mix")
    model.add_argument("--use-proj", action="store_true", help="learned H x H output mix")
    data = p.add_argument_group("data")
    data.add_argument("--data", default="shakespeare", help="'shakespeare' (default), a text file or a folder")
    data.add_argument("--keep-markdown", action="store_true", help="keep the corpus' Markdown markup")
    data.add_argument("--tokenizer", choices=["character", "gpt2"],
                      help="default: character for the character preset, gpt2 otherwise")
    data.add_argument("--val-fraction", type=float, default=0.1)
    run = p.add_argument_group("training")
    run.add_argument("--steps", type=int, help="optimizer steps (default 600)")
    run.add_argument("--epochs", "--num_epochs", "--num-epochs", type=float,
                     help="train for this many passes over the training tokens instead of --steps")
    run.add_argument("--batch-size", "--batch_size", type=int, help="windows per process per micro-step")
    run.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step")
    run.add_argument("--lr", "--learning-rate", type=float, help="peak learning rate (default: the preset's)")
    run.add_argument("--min-lr", type=float)
    run.add_argument("--warmup-steps", type=int, default=50)
    run.add_argument("--weight-decay", type=float, default=0.1)
    run.add_argument("--grad-clip", type=float, default=1.0)
    run.add_argument("--eval-interval", type=int, default=100)
    run.add_argument("--eval-batches", type=int, default=20)
    run.add_argument("--log-interval", type=int, default=10)
    run.add_argument("--seed", type=int, default=1337)
    run.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    run.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    run.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    run.add_argument("--out", "--output", required=True, help="run folder for checkpoints and history")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--test-generation", "--test_generation", action="store_true",
                     help="print a sample at 1x and 4x the training length after training")


def _prepare_data(spec: dict, tokenizer=None):
    """Text, tokenizer and (train, val) token tensors from a data description."""
    from tfa_core.data.corpus import load_text, train_val_split
    from tfa_core.data.tokenizers import create_tokenizer

    source = spec["source"]
    if source != "shakespeare" and not Path(source).exists():
        raise CommandError(f"data {source!r} not found: give 'shakespeare', a text file or a folder")
    text = load_text(source, strip_markdown=spec["strip_markdown"])
    if tokenizer is None:
        tokenizer = (create_tokenizer("gpt2") if spec["tokenizer"] == "gpt2"
                     else create_tokenizer("character", text=text))
    tokens = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train, val = train_val_split(tokens, spec["val_fraction"])
    return tokenizer, train, val


def command_train(args) -> int:
    from tfa_core.training.checkpoint import latest_checkpoint, load_checkpoint
    from tfa_core.model.config import load_alibi_config_preset
    from tfa_core.training.distributed import cleanup_distributed, setup_distributed
    from tfa_core.model.registry import get_model
    from tfa_core.training.trainer import Trainer, TrainingConfig

    dist_info = setup_distributed(args.device)
    say = print if dist_info.is_main else (lambda *a, **k: None)
    try:
        existing = latest_checkpoint(args.out)
        if existing is not None and not args.resume:
            raise CommandError(f"{args.out} already has a checkpoint ({existing.name}); "
                               "add --resume to continue it or choose another --out")
        if args.resume and existing is not None:
            saved = load_checkpoint(existing)
            config, spec = saved.config, saved.extra["data"]
            tokenizer, train, val = _prepare_data(spec, saved.tokenizer)
            training = TrainingConfig.from_dict({**saved.extra["training"],
                                                 "max_steps": args.steps or saved.extra["training"]["max_steps"],
                                                 "progress": not args.no_progress, "device": args.device})
            say(f"resuming {args.out} from {existing.name}")
        else:
            overrides = {k: v for k, v in dict(
                n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout,
                block_size=args.block_size, max_position_embeddings=args.max_position_embeddings,
                batch_size=args.batch_size).items() if v is not None}
            if args.block_size and not args.max_position_embeddings:
                overrides["max_position_embeddings"] = 4 * args.block_size
            config = load_alibi_config_preset(args.preset, use_v=args.use_v, use_proj=args.use_proj, **overrides)
            spec = {"source": args.data, "strip_markdown": not args.keep_markdown,
                    "tokenizer": args.tokenizer or ("character" if args.preset == "character" else "gpt2"),
                    "val_fraction": args.val_fraction}
            tokenizer, train, val = _prepare_data(spec)
            config.update_from_tokenizer(tokenizer)
            steps = args.steps or 600
            if args.epochs:
                per_step = config.batch_size * config.block_size * args.grad_accum * dist_info.world_size
                steps = max(1, math.ceil(args.epochs * len(train) / per_step))
            training = TrainingConfig(
                max_steps=steps, batch_size=config.batch_size, learning_rate=args.lr or config.learning_rate,
                min_learning_rate=args.min_lr, warmup_steps=min(args.warmup_steps, steps),
                weight_decay=args.weight_decay, grad_clip=args.grad_clip, grad_accum_steps=args.grad_accum,
                eval_interval=args.eval_interval, eval_batches=args.eval_batches, log_interval=args.log_interval,
                out_dir=args.out, seed=args.seed, device=args.device, precision=args.precision,
                compile=args.compile, progress=not args.no_progress)
        training.out_dir = args.out
        torch.manual_seed(training.seed)  # the same initial weights for the same seed, on every process
        model = get_model(config.model_type, config)
        say(f"{config.model_type}: {model.get_num_params(non_embedding=False):,} parameters, "
            f"{len(train):,} training tokens, {training.max_steps} steps on {dist_info.device}"
            + (f" x {dist_info.world_size} processes" if dist_info.enabled else ""))
        trainer = Trainer(model, train, val, training, tokenizer=tokenizer, extra={"data": spec},
                          resume=args.resume, dist_info=dist_info)
        history = trainer.fit()
        evals = [r for r in history if r["kind"] == "eval"]
        if evals:
            say(f"step {evals[-1]['step']}: validation loss {evals[-1]['val_loss']:.4f}")
        say(f"saved {trainer.last_checkpoint}")
        if args.test_generation and dist_info.is_main:
            from tfa_core.experiments.evaluation import test_length_extrapolation

            test_length_extrapolation(model, tokenizer, dist_info.device, config, prompt="\n", factors=(1, 4))
    finally:
        cleanup_distributed()
    return 0


# -- generate, evaluate, info ----------------------------------------------------------------

def _load_run(run: str, device: str = "cpu"):
    from tfa_core.training.checkpoint import load_checkpoint
    from tfa_core.training.distributed import pick_device

    if not Path(run).exists():
        raise CommandError(f"run {run!r} not found: give a folder written by 'tfa train --out'")
    saved = load_checkpoint(run, device=pick_device(device))
    if saved.tokenizer is None:
        raise CommandError(f"{saved.path} has no tokenizer description; it was not written by 'tfa train'")
    saved.model.eval()
    return saved


def command_generate(args) -> int:
    from tfa_core.decoding.generate import stream_generate

    saved = _load_run(args.run, args.device)
    prompt = args.prompt or "\n"
    temperature = 0.0 if args.greedy else args.temperature
    print(prompt, end="", flush=True)
    with torch.no_grad():
        for piece in stream_generate(saved.model, saved.tokenizer, prompt, args.max_new_tokens,
                                     temperature=temperature, top_k=args.top_k, top_p=args.top_p,
                                     seed=args.seed, use_cache=not args.no_cache):
            print(piece, end="", flush=True)  # text appears token by token
    print()
    return 0


def command_evaluate(args) -> int:
    from tfa_core.training.trainer import estimate_loss

    saved = _load_run(args.run, args.device)
    spec = dict(saved.extra.get("data") or {})
    if args.data:
        spec.update(source=args.data)
    if not spec:
        raise CommandError(f"{saved.path} does not say what data it was trained on; pass --data")
    _, _, val = _prepare_data(spec, saved.tokenizer)
    lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else [saved.config.block_size]
    print(f"{'length':>8} {'loss':>8} {'perplexity':>11}")
    for length in lengths:
        if length > saved.model.max_sequence_length:
            print(f"{length:>8} {'-':>8} {'-':>11}   (past the model's limit of {saved.model.max_sequence_length})")
            continue
        loss = estimate_loss(saved.model, val, length, args.batch_size, args.max_batches)
        print(f"{length:>8} {loss:>8.4f} {math.exp(loss):>11.3f}")
    return 0


def command_info(args) -> int:
    import json

    from tfa_core.model.config import format_config

    saved = _load_run(args.run)
    print(f"checkpoint  {saved.path} (step {saved.step})")
    print(f"tokenizer   {saved.tokenizer!r}")
    print(format_config(saved.config))
    history = Path(saved.path).parents[1] / "history.jsonl"
    if history.exists():
        records = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
        for kind, key in (("train", "loss"), ("eval", "val_loss")):
            last = [r for r in records if r["kind"] == kind]
            if last:
                print(f"last {kind:<6} step {last[-1]['step']}: {key} {last[-1][key]:.4f}")
    return 0


def command_extrapolate(args) -> int:
    from tfa_core.experiments.study import run_extrapolation_study

    rows = run_extrapolation_study(
        args.out, recipe=args.recipe, models=args.models.split(",") if args.models else None,
        steps=args.steps, lengths=[int(x) for x in args.lengths.split(",")] if args.lengths else None,
        data=args.data, seed=args.seed, device=args.device, progress=not args.no_progress)
    print((Path(args.out) / "report.md").read_text())
    print(f"wrote {len(rows)} results to {Path(args.out) / 'results.csv'}, plots perplexity.png and "
          "loss_by_position.png")
    return 0


# -- entry point -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfa", description="Token-Factored Transformer with ALiBi")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model")
    _add_train_arguments(train)
    train.set_defaults(run_command=command_train)

    generate = commands.add_parser("generate", help="sample text from a trained run")
    generate.add_argument("run")
    generate.add_argument("--prompt", default="", help="text to continue (default: a new line)")
    generate.add_argument("--max-new-tokens", type=int, default=200)
    generate.add_argument("--temperature", type=float, default=0.8)
    generate.add_argument("--top-k", type=int)
    generate.add_argument("--top-p", type=float)
    generate.add_argument("--greedy", action="store_true", help="always take the most likely token")
    generate.add_argument("--seed", type=int)
    generate.add_argument("--no-cache", action="store_true", help="recompute the whole context for every token")
    generate.add_argument("--device", default="cpu")
    generate.set_defaults(run_command=command_generate)

    evaluate = commands.add_parser("evaluate", help="validation loss of a trained run")
    evaluate.add_argument("run")
    evaluate.add_argument("--data", help="evaluate on this text instead of the run's validation split")
    evaluate.add_argument("--lengths", help="comma-separated window lengths, e.g. 128,256,512")
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--max-batches", type=int, default=20)
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(run_command=command_evaluate)

    study = commands.add_parser("extrapolate", help="the length-extrapolation study: train short, test long")
    study.add_argument("--recipe", default="cpu", choices=["cpu", "cuda"])
    study.add_argument("--out", required=True, help="folder for results.csv, report.md and the plots")
    study.add_argument("--models", help="comma-separated registry names (default: every position scheme)")
    study.add_argument("--steps", type=int, help="training steps per model (default: the recipe's)")
    study.add_argument("--lengths", help="comma-separated evaluation lengths (default: the recipe's)")
    study.add_argument("--data", default="shakespeare")
    study.add_argument("--seed", type=int, default=1337)
    study.add_argument("--device", default="auto")
    study.add_argument("--no-progress", action="store_true")
    study.set_defaults(run_command=command_extrapolate)

    info = commands.add_parser("info", help="what a run is and how far it got")
    info.add_argument("run")
    info.set_defaults(run_command=command_info)

    from tfa_core.teaching.grading import add_grade_command  # tfa grade NOTEBOOK...: the course's exercise grader

    add_grade_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``tfa`` command; returns the exit code."""
    from tfa_core.training.trainer import TrainingDiverged

    args = build_parser().parse_args(argv)
    try:
        return args.run_command(args)
    except (CommandError, ValueError, TypeError, FileNotFoundError, ModuleNotFoundError,
            TrainingDiverged) as error:
        if os.environ.get("TFA_DEBUG"):  # the full traceback, for bug reports
            raise
        print(f"tfa {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tfa {args.command}: interrupted", file=sys.stderr)
        return 130


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
