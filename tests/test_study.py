"""The extrapolation study: the learning-rate rule, seeds, resuming, the report and the ablations."""

import csv
import json
import math

import pytest
import torch

import tfa_core
import tfa_core.experiments.study as study_module
from tfa_core.cli import main
from tfa_core.experiments import inspection
from tfa_core.experiments.study import choose_learning_rate
from tfa_core.experiments import study_report
from tfa_core.experiments.study_report import Spread, separated

TINY = dict(tokenizer="character", preset="character", block_size=16, steps=4, batch_size=4,
            learning_rates=[1e-3, 3e-3], seeds=[1, 2], warmup_steps=1, lengths=[16, 32, 64], eval_tokens=200,
            config_overrides=dict(n_layer=1, n_embd=16))


def test_the_best_rate_inside_the_grid_stands():
    assert choose_learning_rate({1e-3: 2.0, 2e-3: 1.9, 4e-3: 2.1}) == (2e-3, None)


def test_a_best_rate_at_an_end_of_the_grid_extends_it():
    assert choose_learning_rate({1e-3: 2.0, 2e-3: 1.9, 4e-3: 1.8}) == (4e-3, 8e-3)
    assert choose_learning_rate({1e-3: 1.7, 2e-3: 1.9, 4e-3: 2.1}) == (1e-3, 5e-4)
    assert choose_learning_rate({0.05: 2.0, 0.08: 1.0}, max_rate=0.1) == (0.08, None)  # x2 leaves the range


def test_a_diverged_run_never_wins():
    assert choose_learning_rate({1e-3: 2.0, 2e-3: math.inf}) == (1e-3, 5e-4)
    with pytest.raises(ValueError, match="no learning rate"):
        choose_learning_rate({})


def test_seeds_separate_only_when_their_ranges_do_not_overlap():
    a, b, c = Spread([1.0, 1.1, 1.2]), Spread([1.3, 1.4, 1.5]), Spread([1.15, 1.4, 1.6])
    assert separated(a, b) and separated(b, a)
    assert not separated(a, c)
    assert (round(a.mean, 6), round(a.sd, 6), a.n) == (1.1, 0.1, 3)
    assert str(a) == "1.100 ± 0.100" and str(Spread([])) == "—"


def test_one_seed_has_no_spread_and_separates_nothing():
    one, other = Spread([2.0]), Spread([2.5])
    assert math.isnan(one.sd) and str(one) == "2.000" and one.cell(2) == "2.00"
    assert not separated(one, other) and not separated(one, Spread([1.0, 1.1]))
    diverged = Spread([2.0, math.inf, None])
    assert (diverged.n, diverged.missing, diverged.mean) == (1, 2, 2.0)


@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    text = tmp_path / "text.txt"
    text.write_text("Shall I compare thee to a summer's day? Thou art more lovely and more temperate. " * 60)
    monkeypatch.setitem(study_module.RECIPES, "tiny", dict(TINY))

    def run(**kwargs):
        arguments = dict(recipe="tiny", models=["FactoredALiBi", "Factored", "Vanilla", "VanillaALiBi"],
                         data=str(text), progress=False, max_extensions=1)
        return study_module.run_extrapolation_study(tmp_path / "out", **{**arguments, **kwargs})

    return run, tmp_path / "out"


def test_a_study_sweeps_rates_runs_seeds_and_reports_the_spread(tiny_study):
    run, out = tiny_study
    rows = run()
    variants = 4 + len(study_module.ABLATIONS)
    sweeps = [r for r in rows if r["seed"] == 1]
    assert len({(r["variant"], r["learning_rate"]) for r in sweeps}) >= 2 * variants  # the grid, or more
    sweep = list(csv.DictReader(open(out / "sweep.csv")))
    chosen = {r["variant"]: float(r["learning_rate"]) for r in sweep if r["chosen"] == "True"}
    assert len(chosen) == variants
    for label, rate in chosen.items():  # the chosen rate has the lowest tuning loss of those tried
        tried = {float(r["learning_rate"]): float(r["tune_loss"]) for r in sweep if r["variant"] == label}
        assert tried[rate] == min(tried.values())
        seeds = {r["seed"] for r in rows if r["variant"] == label and r["learning_rate"] == rate}
        assert seeds == {1, 2}  # every seed at the chosen rate, the sweep's run being the first
        assert study_module.chosen_checkpoint(out, label).name == f"lr{rate:.3g}-seed1"
    model = tfa_core.load_checkpoint(study_module.chosen_checkpoint(out, "FactoredALiBi + V")).model
    assert model.config.use_v and not model.config.use_proj
    summary = list(csv.DictReader(open(out / "summary.csv")))
    row = next(r for r in summary if r["variant"] == "FactoredALiBi" and r["length"] == "64"
               and r["mode"] == "sliding")
    losses = [r["loss"] for r in rows if r["variant"] == "FactoredALiBi" and r["chosen"]
              and r["length"] == 64 and r["mode"] == "sliding"]
    assert row["seeds"] == "2" and float(row["loss_mean"]) == pytest.approx(sum(losses) / 2)
    assert float(row["loss_sd"]) == pytest.approx(abs(losses[0] - losses[1]) / math.sqrt(2))
    learned_long = [r for r in summary if r["variant"] == "Vanilla" and r["length"] == "64"]
    assert all(r["seeds"] == "0" and "table ends at 16" in r["note"] for r in learned_long)
    report = (out / "report.md").read_text()
    assert "## Learning rate per variant" in report and "| standard block |" in report and " ± " in report
    verdicts = [line for line in report.splitlines() if line.startswith("- ") and " nats (" in line]
    endings = ("(separated by the seeds)", "(not separated by the seeds)")
    assert len(verdicts) == 4 and all(line.endswith(endings) for line in verdicts)
    assert "the next token is already in the context at" in report
    setup = json.loads((out / "setup.json").read_text())
    assert setup["seeds"] == [1, 2] and 0 < setup["next_token_in_context"] < 1
    assert f"{setup['next_token_in_context']:.1%}" in report
    assert "| FactoredALiBi + V + P |" in report and "xt reads as context" in report
    for picture in ("perplexity.png", "loss_by_position.png"):
        assert (out / picture).stat().st_size > 5000
    records, chosen_again = study_report.load_study(out)  # what notebooks read back
    assert chosen_again == pytest.approx(chosen) and len(records) == len({(r["variant"], r["learning_rate"],
                                                                           r["seed"]) for r in rows})
    table = study_report.ablation_rows(records, chosen_again, train_length=16)
    assert [row["variant"] for row in table] == ["FactoredALiBi", *(v.label for v in study_module.ABLATIONS),
                                                 "VanillaALiBi"]
    assert table[0]["versus"] is None and table[1]["loss"].n == 2
    assert table[1]["versus"] == pytest.approx(table[1]["loss"].mean - table[0]["loss"].mean)
    assert 0 <= table[1]["xt"].mean <= 1 and table[-1]["xt"].mean == table[-1]["xt+xe"].mean  # one stream


def test_a_study_started_again_runs_only_what_is_missing(tiny_study, monkeypatch):
    run, out = tiny_study
    first = run(models=["FactoredALiBi"], ablations=False)
    [second_seed] = (out / "runs" / "FactoredALiBi").glob("*-seed2.json")
    second_seed.unlink()
    trained = []
    original = study_module.Trainer.fit
    monkeypatch.setattr(study_module.Trainer, "fit",
                        lambda self, *args, **kwargs: trained.append(1) or original(self))
    again = run(models=["FactoredALiBi"], ablations=False)
    assert len(trained) == 1  # only the deleted seed-2 run trained again
    assert [r["loss"] for r in again] == [r["loss"] for r in first]  # and gave the same numbers


def test_a_study_refuses_runs_made_with_other_settings(tiny_study):
    run, out = tiny_study
    run(models=["FactoredALiBi"], ablations=False, seeds=[1], learning_rates=[1e-3])
    with pytest.raises(ValueError, match="other settings or data"):
        run(models=["FactoredALiBi"], ablations=False, seeds=[1], learning_rates=[1e-3], steps=5)


def test_a_study_names_a_bad_model_or_repeated_seeds_at_once(tiny_study):
    run, _ = tiny_study
    with pytest.raises(ValueError, match="unknown model 'GPT5'"):
        run(models=["GPT5"])
    with pytest.raises(ValueError, match="different from each other"):
        run(seeds=[1, 1])


def test_extrapolate_command_takes_seeds_and_rates(tmp_path, capsys):
    assert main(["extrapolate", "--out", str(tmp_path), "--models", "GPT5", "--no-progress"]) == 2
    assert "unknown model 'GPT5'" in capsys.readouterr().err
    assert main(["extrapolate", "--out", str(tmp_path), "--seeds", "1,1"]) == 2
    assert "seeds must be different" in capsys.readouterr().err
    assert main(["extrapolate", "--out", str(tmp_path), "--lrs", "1e-3,inf"]) == 2
    assert "learning rates must be" in capsys.readouterr().err


def test_values_from_both_streams_compute_what_one_stream_computes():
    """The two ways of undoing the split are one function: with values from xt + xe, the sum
    xt + xe follows exactly the recursion of a single stream that the MLP also writes."""
    config = tfa_core.GPTConfigALiBi(n_layer=3, n_head=4, n_embd=32, block_size=16, vocab_size=50,
                                     dropout=0.0)
    ids = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    logits = {}
    for name in ("FactoredALiBiMixedValues", "FactoredALiBiOneStream", "FactoredALiBi"):
        torch.manual_seed(0)
        logits[name] = tfa_core.get_model(name, config).eval()(ids)["logits"]
    assert torch.allclose(logits["FactoredALiBiMixedValues"], logits["FactoredALiBiOneStream"], atol=1e-5)
    assert not torch.allclose(logits["FactoredALiBiMixedValues"], logits["FactoredALiBi"], atol=1e-3)


def test_reads_as_context_counts_first_choices_found_in_the_context(monkeypatch):
    config = tfa_core.GPTConfigALiBi(n_layer=1, n_head=2, n_embd=8, block_size=8, vocab_size=10, dropout=0.0)
    model = tfa_core.get_model("FactoredALiBi", config)
    ids = torch.tensor([[1, 2, 3, 4]])
    first_choices = torch.tensor([[1, 1, 4, 9]])  # in context, in context, seen only later, never seen
    lens = torch.nn.functional.one_hot(first_choices, 10).float()[None]  # (1 read-out, B, T, V)
    monkeypatch.setattr(inspection, "logit_lens", lambda model, ids: {"xt": lens, "xe": lens, "xt+xe": lens})
    assert inspection.reads_as_context(model, ids) == pytest.approx(0.5)  # positions 0 and 1
    with pytest.raises(ValueError, match="no stream 'x'"):
        inspection.reads_as_context(model, ids, "x")


def test_one_seed_gives_no_verdict(tiny_study):
    run, out = tiny_study
    run(seeds=[1], learning_rates=[1e-3], ablations=False)
    report = (out / "report.md").read_text()
    assert "(one seed: no verdict)" in report and "separated by the seeds" not in report
    assert " ± " not in report.split("## Perplexity")[1]  # one value a cell: no spread printed


def test_settings_the_evaluation_cannot_honour_are_refused_before_training(tiny_study, monkeypatch):
    run, _ = tiny_study
    monkeypatch.setattr(study_module.Trainer, "fit", lambda self: pytest.fail("trained"))
    with pytest.raises(ValueError, match=r"must include the training length 16"):
        run(lengths=[32, 64])
    with pytest.raises(ValueError, match=r"eval_tokens 5,000 is more than each half of the held-out text"):
        run(eval_tokens=5000)
    with pytest.raises(ValueError, match=r"less than one window of the longest length 64"):
        run(eval_tokens=40)


def test_a_narrower_study_keeps_what_a_wider_one_chose(tiny_study):
    run, out = tiny_study
    run(models=["FactoredALiBi", "Vanilla"], ablations=False, seeds=[1], learning_rates=[1e-3])
    run(models=["FactoredALiBi"], ablations=False, seeds=[1], learning_rates=[1e-3])
    records, chosen = study_report.load_study(out)
    assert set(chosen) == {"FactoredALiBi", "Vanilla"} and {r["label"] for r in records} == set(chosen)
    assert study_module.chosen_checkpoint(out, "Vanilla").exists()


def test_each_variant_can_have_its_own_rates(tiny_study):
    run, out = tiny_study
    run(models=["FactoredALiBi", "Vanilla"], ablations=False, seeds=[1],
        learning_rates={"FactoredALiBi": [3e-3], "Vanilla": 1e-3})  # a grid or one rate each
    records, chosen = study_report.load_study(out)
    assert chosen == {"FactoredALiBi": 3e-3, "Vanilla": 1e-3}
    assert sorted((r["label"], r["learning_rate"]) for r in records) == [("FactoredALiBi", 3e-3),
                                                                         ("Vanilla", 1e-3)]
    with pytest.raises(ValueError, match=r"names \['Factored'\], which this study does not run"):
        run(models=["FactoredALiBi"], ablations=False, seeds=[1], learning_rates={"Factored": [1e-3]})
    cost = study_module.recipe_cost("cpu", models=["FactoredALiBi", "Vanilla"], ablations=False, seeds=[1, 2],
                                    learning_rates={"FactoredALiBi": [1e-3]})
    assert cost["runs"] == (1 + 1) + (3 + 1)  # FactoredALiBi its one rate, Vanilla the recipe's three
    with pytest.raises(ValueError, match=r"names \['GPT5'\]"):
        study_module.recipe_cost("cpu", models=["FactoredALiBi"], ablations=False,
                                 learning_rates={"GPT5": [1e-3]})


def test_rates_that_share_a_file_name_are_refused(tiny_study):
    run, _ = tiny_study
    run(models=["FactoredALiBi"], ablations=False, seeds=[1], learning_rates=[0.00123])
    with pytest.raises(ValueError, match="share a file"):
        run(models=["FactoredALiBi"], ablations=False, seeds=[1], learning_rates=[0.0012345])


def test_a_diverged_seed_is_left_out_of_the_means_and_named(tiny_study, monkeypatch):
    run, out = tiny_study
    original = study_module.Trainer.fit

    def fit(self, *args, **kwargs):
        if self.config.seed == 2:
            raise study_module.TrainingDiverged("loss became nan")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(study_module.Trainer, "fit", fit)
    run(models=["FactoredALiBi"], ablations=False, learning_rates=[1e-3])
    summary = list(csv.DictReader(open(out / "summary.csv")))
    assert {(r["runs"], r["diverged"], r["seeds"]) for r in summary} == {("2", "1", "1")}
    assert "- FactoredALiBi at rate 0.001, seed 2" in (out / "report.md").read_text()
