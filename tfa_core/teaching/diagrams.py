"""Diagrams for the course, drawn with matplotlib so that they live in the repository as code.

``factored_block_diagram()`` draws the token-factored model: the two streams ``xt`` and ``xe``, one
block (attention writes ``xt`` with values taken from ``xt`` itself; the MLP writes ``xe``), ALiBi in
the attention scores, and the tied read-out. Notebooks 00 and 02 show it.
"""

from __future__ import annotations

__all__ = ["XT_COLOUR", "XE_COLOUR", "factored_block_diagram"]

XT_COLOUR = "#1f77b4"  # xt, token-like: blue in every figure of the course
XE_COLOUR = "#ff7f0e"  # xe, embedding-like: orange
_GREY = "#555555"


def _box(ax, x, y, text, width=2.6, height=0.55, colour=_GREY, fill="white", size=9):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.02,rounding_size=0.12", linewidth=1.2,
                                edgecolor=colour, facecolor=fill, zorder=3))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, zorder=4)


def _plus(ax, x, y, colour=_GREY):
    from matplotlib.patches import Circle

    ax.add_patch(Circle((x, y), 0.2, facecolor="white", edgecolor=colour, linewidth=1.4, zorder=3))
    ax.text(x, y - 0.01, "+", ha="center", va="center", fontsize=12, color=colour, zorder=4)


def _arrow(ax, start, end, colour=_GREY, width=1.2, style="-|>", connection="arc3"):
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=11, color=colour,
                                 linewidth=width, shrinkA=0, shrinkB=0, connectionstyle=connection,
                                 zorder=2))


def factored_block_diagram(ax=None, use_v: bool = False):
    """Draw the token-factored transformer with ALiBi, one block in detail; returns the figure.

    ``use_v=True`` labels the values ``(V ⊗ I_d) xt`` (notebook 04's channel mixing) instead of ``xt``.
    Pass ``ax`` to draw into an existing matplotlib axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(8.6, 9.2))
    else:
        fig = ax.figure
    ax.set_xlim(-0.6, 11.4)
    ax.set_ylim(-0.1, 14.0)
    ax.set_axis_off()
    XT, XE, MID = 2.2, 8.6, 5.4

    # inputs: xt is the token embedding, xe is zero
    _box(ax, XT, 13.5, "token ids", width=2.2)
    _box(ax, XT, 12.55, "xt = wte[ids]", width=2.4, colour=XT_COLOUR)
    _box(ax, XE, 12.55, "xe = 0", width=1.6, colour=XE_COLOUR)
    _arrow(ax, (XT, 13.22), (XT, 12.83))
    ax.text(XT - 1.45, 12.1, "nothing positional\nis ever added to xt", ha="right", va="center", fontsize=7.5,
            color=XT_COLOUR)

    # the two lanes run through the block
    block_top, block_bottom = 11.75, 3.35
    ax.plot([XT, XT], [12.27, 2.75], color=XT_COLOUR, linewidth=3, zorder=1, solid_capstyle="butt")
    ax.plot([XE, XE], [12.27, 2.75], color=XE_COLOUR, linewidth=3, zorder=1, solid_capstyle="butt")
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((0.75, block_bottom), 9.3, block_top - block_bottom,
                                boxstyle="round,pad=0.02,rounding_size=0.2", linewidth=1.0, linestyle="--",
                                edgecolor="#999999", facecolor="#f7f7f7", zorder=0))
    ax.text(XT + 0.25, block_bottom + 0.1, "one block, repeated L times", ha="left", va="bottom",
            fontsize=7.5, color="#666666")
    ax.text(XT, 11.95, "xt  token-like", ha="center", va="bottom", fontsize=9, color=XT_COLOUR, weight="bold",
            zorder=5, bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    ax.text(XE, 11.95, "xe  embedding-like", ha="center", va="bottom", fontsize=9, color=XE_COLOUR,
            weight="bold", zorder=5, bbox=dict(facecolor="white", edgecolor="none", pad=0.5))

    # attention: queries and keys from LN1(xt + xe), values from xt, the result added to xt
    _plus(ax, MID, 11.1)
    _arrow(ax, (XT, 11.1), (MID - 0.2, 11.1), colour=XT_COLOUR)
    _arrow(ax, (XE, 11.1), (MID + 0.2, 11.1), colour=XE_COLOUR)
    _box(ax, MID, 10.35, "LN1", width=1.3)
    _arrow(ax, (MID, 10.9), (MID, 10.63))
    _box(ax, MID, 9.55, "queries, keys = LN1(xt + xe) W_qk", width=4.0, size=8.5)
    _arrow(ax, (MID, 10.07), (MID, 9.83))
    _box(ax, MID + 0.7, 8.45, "softmax(q kᵀ/√d  − m·(i − j))\ncausal: keys after the query get −inf",
         width=4.6, height=0.85, colour="#2ca02c", size=8.5)
    _arrow(ax, (MID, 9.27), (MID, 8.88))  # into the scores box
    ax.text(XE + 0.25, 8.45, "ALiBi: a slope m\nper head, no\nposition vectors", ha="left", va="center",
            fontsize=7.5, color="#2ca02c")
    values = "values = (V ⊗ I_d) xt" if use_v else "values = xt itself"
    _box(ax, MID + 0.7, 7.35, "attention weights × values", width=3.2, size=8.5)
    _arrow(ax, (MID + 0.7, 8.02), (MID + 0.7, 7.63))
    _arrow(ax, (XT, 7.35), (MID + 0.7 - 1.6, 7.35), colour=XT_COLOUR)
    ax.text(XT + 0.1, 7.45, values, ha="left", va="bottom", fontsize=7.5, color=XT_COLOUR)
    _plus(ax, XT, 6.55, colour=XT_COLOUR)
    _arrow(ax, (MID + 0.7, 7.07), (XT + 0.2, 6.6), colour=XT_COLOUR, connection="arc3,rad=-0.15")
    ax.text(MID + 0.7, 6.55, "xt = xt + attention: a weighted sum of\n"
            "head-blocks of context token embeddings",
            ha="left", va="center", fontsize=7.5, color=XT_COLOUR)

    # MLP: reads the updated xt plus xe, writes xe
    _plus(ax, MID, 5.7)
    _arrow(ax, (XT, 5.7), (MID - 0.2, 5.7), colour=XT_COLOUR)
    _arrow(ax, (XE, 5.7), (MID + 0.2, 5.7), colour=XE_COLOUR)
    _box(ax, MID, 4.95, "LN2", width=1.3)
    _arrow(ax, (MID, 5.5), (MID, 5.23))
    _box(ax, MID, 4.1, "MLP: C → 4C → C", width=2.6, colour=XE_COLOUR, size=8.5)
    _arrow(ax, (MID, 4.67), (MID, 4.38))
    _plus(ax, XE, 3.7, colour=XE_COLOUR)
    _arrow(ax, (MID + 1.3, 4.0), (XE - 0.2, 3.72), colour=XE_COLOUR)
    ax.text(XE + 0.3, 4.35, "xe = xe + MLP", ha="left", va="center", fontsize=7.5, color=XE_COLOUR)

    # the read-out: both streams, the final norm, the tied embedding
    _plus(ax, MID, 2.75)
    _arrow(ax, (XT, 2.75), (MID - 0.2, 2.75), colour=XT_COLOUR)
    _arrow(ax, (XE, 2.75), (MID + 0.2, 2.75), colour=XE_COLOUR)
    _box(ax, MID, 2.0, "LN_f", width=1.3)
    _arrow(ax, (MID, 2.55), (MID, 2.28))
    _box(ax, MID, 1.15, "logits = LN_f(xt + xe) @ wteᵀ   (tied)", width=4.6, size=8.5)
    _arrow(ax, (MID, 1.72), (MID, 1.43))
    ax.text(MID, 0.35, "the same embedding wte makes xt at the start and reads the logits at the end",
            ha="center", va="center", fontsize=7.5, color="#666666")
    ax.set_title("The token-factored transformer with ALiBi: two streams", fontsize=11)
    return fig
