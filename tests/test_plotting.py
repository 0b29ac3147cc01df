from tfa_core.training.live_plot import LiveLossPlot


def test_live_loss_plot_draws_what_the_trainer_reported(tmp_path):
    plot = LiveLossPlot(every=2, path=tmp_path / "loss.png")
    for record in [{"kind": "train", "step": 10, "loss": 3.0}, {"kind": "train", "step": 20, "loss": 2.5},
                   {"kind": "eval", "step": 20, "val_loss": 2.6}, {"kind": "train", "step": 30, "loss": 2.2}]:
        plot(record)
    assert (tmp_path / "loss.png").stat().st_size > 1000
    lines = plot.figure().axes[0].get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[10, 20, 30], [20]]
    assert [list(line.get_ydata()) for line in lines] == [[3.0, 2.5, 2.2], [2.6]]
