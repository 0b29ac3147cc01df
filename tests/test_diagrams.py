"""The course's diagram of the factored block is drawn by code (tfa_core/teaching/diagrams.py)."""

import matplotlib

matplotlib.use("Agg")

from tfa_core.teaching.diagrams import factored_block_diagram  # noqa: E402


def texts(fig):
    return " | ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_the_diagram_shows_both_streams_and_who_writes_them():
    fig = factored_block_diagram()
    words = texts(fig)
    for expected in ("xt = wte[ids]", "xe = 0", "LN1", "values = xt itself", "m·(i − j)", "MLP",
                     "xe = xe + MLP", "xt = xt + attention", "LN_f(xt + xe) @ wteᵀ", "nothing positional"):
        assert expected in words, expected
    assert not fig.axes[0].axison  # a diagram, not a plot: no axes to label
    fig.canvas.draw()  # renders without error


def test_channel_mixing_changes_the_values_label_and_an_axes_can_be_given():
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    assert factored_block_diagram(ax=right, use_v=True) is fig
    assert "(V ⊗ I_d) xt" in texts(fig) and "values = xt itself" not in texts(fig)
