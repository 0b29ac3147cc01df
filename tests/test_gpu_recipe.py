"""The CUDA recipe of the length-extrapolation study: what it costs, that it does not overfit by
construction, and that it never starts on a CPU by accident (a step there takes half a minute)."""

import pytest
import torch

import tfa_core.experiments.study as study_module
from tfa_core import load_alibi_config_preset
from tfa_core.cli import main
from tfa_core.experiments.study import RECIPES, recipe_cost
from tfa_core.training.resources import flops_per_token

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the recipe may run")


def small_gpt2_config(**overrides):
    return load_alibi_config_preset("small", vocab_size=50257, **overrides)


def test_flops_per_token_counts_the_weights_a_token_meets_and_the_attention():
    """``small`` with GPT-2's vocabulary: 2,623,744 weights in the blocks and norms, 12,865,792 in
    the tied embedding (counted once, as the output layer), and 12 x 4 layers x 256 wide x 256 tokens
    for attention. A learned position table is looked up, never multiplied: it adds nothing."""
    config = small_gpt2_config()
    blocks, head, attention = 2_623_744, 50257 * 256, 12 * 4 * 256 * 256
    assert flops_per_token("FactoredALiBi", config) == 6 * (blocks + head) + attention == 96_082_944
    assert flops_per_token("Factored", config) == 96_082_944  # + a 256 x 256 position table
    assert flops_per_token("FactoredALiBi", config, length=4096) == 6 * (blocks + head) + 16 * attention


def test_the_cuda_recipe_passes_over_its_training_tokens_at_most_four_times():
    """Shakespeare's training split is 1,350,185 GPT-2 tokens; 600 steps of 32 windows of 256 tokens
    cover it 3.6 times (the old 5,000 steps: 30 times), with dropout 0.1 and weight decay 0.1."""
    cost = recipe_cost("cuda")
    assert cost["train_tokens"] == 1_350_185
    assert cost["tokens"] == 600 * 32 * 256 == 4_915_200
    assert cost["passes"] == pytest.approx(3.640, abs=1e-3) and cost["passes"] <= 4
    assert RECIPES["cuda"]["dropout"] == 0.1 and RECIPES["cuda"]["weight_decay"] == 0.1
    assert recipe_cost("cuda", steps=5000)["passes"] == pytest.approx(30.34, abs=0.01)


def test_the_cuda_recipe_costs_its_training_and_evaluation_flops():
    """Every variant trains at each of 3 rates and at 2 more seeds: 5 runs of 4,915,200 tokens at
    6 x weights + attention FLOPs a token; each run's evaluation does forward passes (a third of
    that) over 3 x 131,072 tokens at each of five lengths."""
    cost = recipe_cost("cuda")
    config = small_gpt2_config(block_size=256, max_position_embeddings=4096, dropout=0.1)
    variants = study_module.study_variants()
    assert cost["variants"] == len(study_module.STUDY_MODELS) + len(study_module.ABLATIONS)
    assert cost["runs"] == 5 * cost["variants"]
    assert cost["train_flops"] == 5 * sum(flops_per_token(v.model, config) for v in variants) * 4_915_200
    evaluation = sum(flops_per_token(v.model, config, length) / 3 * 3 * 65_536
                     for v in variants for length in (256, 512, 1024, 2048, 4096))
    tuning = sum(flops_per_token(v.model, config, 256) / 3 * 65_536 for v in variants)
    assert cost["eval_flops"] == pytest.approx(5 * (evaluation + tuning))
    assert cost["flops"] == cost["train_flops"] + cost["eval_flops"]
    one = recipe_cost("cuda", models=["FactoredALiBi"], ablations=False, seeds=[1], learning_rates=[6e-4])
    assert one["runs"] == 1 and one["train_flops"] == flops_per_token("FactoredALiBi", config) * 4_915_200


@no_cuda
def test_the_cuda_recipe_without_cuda_stops_and_says_how_long_it_would_take(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"the cuda recipe needs a GPU: 70 runs x 4,915,200 training "
                                         r"tokens, [\d.]+e\+16 FLOPs, at least [\d,]+ hours on this cpu"):
        study_module.run_extrapolation_study(tmp_path / "study", recipe="cuda")
    assert not (tmp_path / "study").exists()  # stopped before anything was written
    assert main(["extrapolate", "--recipe", "cuda", "--out", str(tmp_path / "cli"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "needs a GPU" in error and "pass --device cpu (in Python" in error and "\n" not in error.strip()


@no_cuda
def test_the_cuda_recipe_on_a_cpu_asked_for_by_name_runs_with_a_warning(tmp_path, monkeypatch):
    class Started(Exception):
        pass

    def stop(*args, **kwargs):
        raise Started

    monkeypatch.setattr(study_module, "get_model", stop)  # the first thing after the data is loaded
    with pytest.warns(RuntimeWarning, match="needs a GPU.*running it on cpu because you asked for it"):
        with pytest.raises(Started):
            study_module.run_extrapolation_study(tmp_path / "study", recipe="cuda", models=["FactoredALiBi"],
                                                 device="cpu")


def test_the_cuda_recipe_scores_no_more_tokens_than_each_held_out_half_holds():
    """The study chooses rates on one half of the held-out text and reports on the other: 150,020
    GPT-2 tokens make halves of 75,010, so each can score 65,536 targets (131,072 could not)."""
    cost = recipe_cost("cuda")
    half = cost["held_out_tokens"] // 2
    assert (cost["held_out_tokens"], half) == (150_020, 75_010)
    study_module.check_study_settings(RECIPES["cuda"], half, cost["held_out_tokens"] - half)
    with pytest.raises(ValueError, match="more than each half of the held-out text holds"):
        study_module.check_study_settings({**RECIPES["cuda"], "eval_tokens": 131_072}, half, half)
