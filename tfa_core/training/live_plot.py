"""A live loss plot for training in a notebook: pass it to ``Trainer(callbacks=[...])``."""

from __future__ import annotations

__all__ = ["LiveLossPlot"]


class LiveLossPlot:
    """Collect the trainer's history records and redraw training and validation loss.

    In a notebook the figure is updated in place (one output, no flicker); elsewhere nothing is
    shown unless ``path`` is given, where a PNG is written at each redraw.
    ``every``: redraw after this many training records.
    """

    def __init__(self, every: int = 1, path=None, title: str = "loss"):
        self.every, self.path, self.title = every, path, title
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self._handle = None

    def __call__(self, record: dict) -> None:
        if record["kind"] == "train":
            self.train.append((record["step"], record["loss"]))
            if len(self.train) % self.every == 0:
                self.redraw()
        elif record["kind"] == "eval":
            self.val.append((record["step"], record["val_loss"]))
            self.redraw()

    def figure(self):
        """A new matplotlib figure of the curves so far (built without pyplot, so it never pops up
        a window or changes the backend)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3.5))
        ax = fig.add_subplot()
        for points, label in ((self.train, "training"), (self.val, "validation")):
            if points:
                steps, losses = zip(*points)
                ax.plot(steps, losses, marker="o" if label == "validation" else None, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per token)")
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        if self.train or self.val:
            ax.legend()
        fig.tight_layout()
        return fig

    def redraw(self) -> None:
        """Draw the curves again: into ``path`` if given, and in place in a notebook."""
        fig = self.figure()
        if self.path is not None:
            fig.savefig(self.path, dpi=100)
        if _in_notebook():
            import io

            from IPython.display import Image, display

            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=100)
            image = Image(buffer.getvalue())
            if self._handle is None:
                self._handle = display(image, display_id=True)
            else:
                self._handle.update(image)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
