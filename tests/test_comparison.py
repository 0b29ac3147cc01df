from tfa_core import estimate_model_parameters, load_alibi_config_preset
from tfa_core.experiments.comparison import measure_forward, plot_comparison, run_comprehensive_comparison


def test_measure_forward_reports_exact_parameters_and_a_time():
    row = measure_forward("Vanilla", 64, preset="character", max_length=64, vocab_size=81, repeats=1)
    config = load_alibi_config_preset("character", vocab_size=81, block_size=64)
    assert row["params"] == estimate_model_parameters(config, "Vanilla")
    assert row["forward_ms"] > 0 and row["peak_mb"] >= 0
    assert row["process_peak_mb"] >= row["peak_mb"]


def test_comparison_table_and_figure(tmp_path, capsys):
    rows = run_comprehensive_comparison([32, 64], ["FactoredALiBi"], preset="character", vocab_size=81,
                                        device="cpu", out_dir=tmp_path)
    assert [(r["model"], r["length"]) for r in rows] == [("FactoredALiBi", 32), ("FactoredALiBi", 64)]
    assert "FactoredALiBi      32 tokens" in capsys.readouterr().out
    assert (tmp_path / "comparison.png").stat().st_size > 5000
    fake = [{"model": m, "length": n, "params": p, "forward_ms": n / 10, "peak_mb": n / 100}
            for m, p in (("FactoredALiBi", 10), ("Vanilla", 12)) for n in (128, 256)]
    plot_comparison(fake, tmp_path / "fake.png")
    assert (tmp_path / "fake.png").stat().st_size > 5000
