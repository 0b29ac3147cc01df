"""Interactive widgets for the course notebooks: move a slider, see the model's numbers change.

Each function returns a ``WidgetBox`` (an ``ipywidgets.VBox``) that a notebook displays by putting it
last in a cell. What it shows is a PNG figure (``box.figure``, an ``ipywidgets.Image``) and a table
(``box.table``, an ``ipywidgets.HTML``); its controls are in ``box.controls`` by name, so a test, or
a curious learner, can set them from code::

    box = slopes_widget()
    box.controls["n_head"].value = 6      # the figure and the table update at once

Figures are drawn with matplotlib's ``Figure`` directly (not pyplot), so nothing pops up and the
notebook's own plots are left alone. The controls sit in rows that wrap rather than shrink, so every
slider keeps a usable track in a narrow notebook; and the display data carries the figure as a PNG
too, which is what a page without the widget front end shows (a notebook before it runs, GitHub,
nbconvert's HTML, the course's book) instead of the widget's Python repr.
"""

from __future__ import annotations

import base64
import html
import io
import math

import ipywidgets
import torch

from tfa_core.model.alibi import alibi_bias, alibi_slopes
from tfa_core.model.checks import is_int
from tfa_core.model.factored import channel_mix, kronecker_lift

__all__ = ["WidgetBox", "slopes_widget", "alibi_bias_widget", "stream_norms_widget", "channel_mix_widget",
           "lens_attention_widget"]

# A slider as wide as this keeps a track of about 200 px beside its label and readout; in a row that
# is too narrow the next slider wraps to a new line instead of squeezing every track to a knob.
SLIDER_WIDTH = "320px"


class WidgetBox(ipywidgets.VBox):
    """The rows of controls, the figure and the table of one course widget.

    In JupyterLab it is the live widget. Its display data also carries the current figure as
    ``image/png`` and a one-line ``text/plain``: renderers without the widget front end show the
    picture, never ``VBox(children=(...``, and nothing is fetched from a network.
    """

    title = "course widget"

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = f"{self.title} (run the notebook to use its controls)"
        figure = bytes(self.figure.value)
        if figure:
            bundle["image/png"] = base64.b64encode(figure).decode("ascii")
        return bundle


def _png(figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _figure(width: float, height: float, columns: int = 1):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, columns)
    return figure, axes


def _power_of_two(x: float) -> str:
    """``0.25`` -> ``"2^-2"``; ``2^-0.5`` -> ``"2^-0.5"``."""
    exponent = math.log2(x)
    return f"2^{exponent:g}" if abs(exponent - round(exponent, 3)) < 1e-6 else f"{x:.4g}"


def _require_int(name: str, value, low: int, high: int | None = None) -> None:
    """A ValueError/TypeError naming the argument unless ``low <= value <= high``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bounds}, got {value}")


def _table(header: list[str], rows: list[list[str]], bold_row: int | None = None) -> str:
    cell = "padding:2px 10px;text-align:right"
    head = "".join(f"<th style='{cell}'>{html.escape(h)}</th>" for h in header)
    body = ""
    for i, row in enumerate(rows):
        weight = "font-weight:bold;" if i == bold_row else ""
        body += "<tr>" + "".join(f"<td style='{weight}{cell}'>{value}</td>" for value in row) + "</tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _slider(kind, description: str, **options):
    """An ``IntSlider``/``FloatSlider`` of the course's width (``SLIDER_WIDTH``) unless told otherwise."""
    options.setdefault("layout", ipywidgets.Layout(width=SLIDER_WIDTH, min_width=SLIDER_WIDTH))
    return kind(description=description, **options)


def _assemble(title: str, controls: dict, update, width: str = "760px", rows: list[list[str]] | None = None):
    """A ``WidgetBox`` of the controls (in ``rows`` of names, one row of all of them by default; a row
    wraps when the notebook is narrow), the figure and the table. ``update(values)`` returns
    ``(png, html)`` and runs once now and again whenever a control changes."""
    figure = ipywidgets.Image(format="png",
                              layout=ipywidgets.Layout(width=width, max_width="100%", height="auto"))
    table = ipywidgets.HTML()

    def refresh(_change=None) -> None:
        png, text = update({name: control.value for name, control in controls.items()})
        figure.value, table.value = png, text

    for control in controls.values():
        control.observe(refresh, names="value")
    refresh()
    rows = rows or [list(controls)]
    wrap = ipywidgets.Layout(flex_flow="row wrap", align_items="center")
    lines = [ipywidgets.HBox([controls[name] for name in row], layout=wrap) for row in rows]
    box = WidgetBox([*lines, figure, table])
    box.title, box.controls, box.figure, box.table, box.refresh = title, controls, figure, table, refresh
    return box


# -- ALiBi slopes --------------------------------------------------------------------------------------

def slopes_widget(n_head: int = 6, max_heads: int = 16):
    """Number of heads -> the ALiBi slopes of the authors' algorithm, next to the closed form
    ``2^(-8(h+1)/n)`` that blogs use, which agrees only when ``n`` is a power of two."""
    _require_int("max_heads", max_heads, 1)
    _require_int("n_head", n_head, 1, max_heads)
    slider = _slider(ipywidgets.IntSlider, "heads", value=n_head, min=1, max=max_heads)

    def update(values):
        n = values["n_head"]
        slopes = alibi_slopes(n).tolist()
        closed = [2.0 ** (-8 * (h + 1) / n) for h in range(n)]
        figure, ax = _figure(7.5, 3.4)
        heads = range(n)
        ax.bar(heads, [math.log2(s) for s in slopes], color="#1f77b4", label="authors' algorithm")
        ax.plot(heads, [math.log2(c) for c in closed], "o", color="#d62728",
                label="closed form 2^(-8(h+1)/n)")
        ax.set_xlabel("head")
        ax.set_ylabel("log2(slope)")
        ax.set_xticks(list(heads))
        ax.set_title(f"{n} heads: slopes on a log2 scale (lower = shorter attention span)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8)
        power = n & (n - 1) == 0
        verdict = ("a power of two: the closed form agrees" if power else
                   "not a power of two: the closed form gives different slopes")
        rows = [[str(h), _power_of_two(s), f"{s:.5f}", _power_of_two(c),
                 "✔" if math.isclose(s, c, rel_tol=1e-6) else "✘"]
                for h, (s, c) in enumerate(zip(slopes, closed))]
        text = (f"<p><b>{n} heads</b> — {verdict}.</p>"
                + _table(["head", "slope", "value", "closed form", "same?"], rows))
        return _png(figure), text

    return _assemble("ALiBi slopes widget", {"n_head": slider}, update)


# -- ALiBi bias and attention span ---------------------------------------------------------------------

def alibi_bias_widget(n_head: int = 8, length: int = 24, max_length: int = 128):
    """Head and length -> that head's bias matrix (masked keys in grey) and how its attention
    weight falls with distance when every score is equal, so that only ALiBi decides."""
    _require_int("n_head", n_head, 1)
    _require_int("max_length", max_length, 2)
    _require_int("length", length, 2, max_length)
    controls = {
        "head": _slider(ipywidgets.IntSlider, "head", value=0, min=0, max=n_head - 1),
        "length": _slider(ipywidgets.IntSlider, "length", value=length, min=2, max=max_length),
    }
    slopes = alibi_slopes(n_head)

    def update(values):
        head, T = values["head"], values["length"]
        m = float(slopes[head])
        bias = alibi_bias(slopes[head:head + 1], T)[0]  # (T, T), -inf above the diagonal
        weights = torch.softmax(bias[-1], dim=-1)  # the last query, equal scores: ALiBi alone
        distance = torch.arange(T - 1, -1, -1)  # distance of each key from the last query
        from matplotlib import colormaps

        figure, (left, right) = _figure(9.0, 3.4, columns=2)
        shown = bias.masked_fill(torch.isinf(bias), float("nan")).numpy()
        image = left.imshow(shown, cmap=colormaps["viridis"].with_extremes(bad="#cccccc"))
        left.set_title(f"head {head}: bias -m(i - j), m = {_power_of_two(m)}")
        left.set_xlabel("key j")
        left.set_ylabel("query i")
        figure.colorbar(image, ax=left, shrink=0.8)
        right.plot(distance.numpy(), weights.numpy(), ".-")
        half = math.log(2) / m
        if half < T:
            right.axvline(half, color="#d62728", linestyle="--", label=f"half weight at {half:.1f}")
            right.legend(fontsize=8)
        right.set_xlabel("distance i - j (tokens back)")
        right.set_ylabel("attention weight")
        right.set_title(f"last query of {T}: weights from ALiBi alone")
        recent = float(weights[-min(8, T):].sum())
        rows = [[str(h), _power_of_two(float(s)), f"{math.log(2) / float(s):.1f}"]
                for h, s in enumerate(slopes)]
        text = (f"<p>Head {head}: slope {m:.4g}; over {T} keys with equal scores the newest key gets weight "
                f"{float(weights[-1]):.3f} and the last {min(8, T)} keys get {recent:.0%} of the weight.</p>"
                + _table(["head", "slope", "half-weight distance"], rows, bold_row=head))
        return _png(figure), text

    return _assemble("ALiBi bias widget", controls, update, width="860px")


# -- the two streams through the layers ----------------------------------------------------------------

def stream_norms_widget(model, input_ids: torch.Tensor):
    """Layer -> the norms of ``xt`` and ``xe`` at every position after that many blocks (0 is the
    embedding), and a table of their means through all layers.

    ``model``: a token-factored model (``FactoredALiBi`` or ``Factored``); ``input_ids``: ``(1, T)``
    or ``(T,)`` token ids. The model is run once, without gradients, in eval mode.
    """
    from tfa_core.model.factored import FactoredTransformerModelALiBi

    if not isinstance(model, FactoredTransformerModelALiBi):
        raise TypeError(f"stream_norms_widget needs a token-factored model (get_model('FactoredALiBi', "
                        f"config)), which keeps xt and xe apart; got {type(model).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        streams = model(input_ids[:1].to(next(model.parameters()).device), return_streams=True)["streams"]
    model.train(was_training)
    xt_norms = [xt[0].norm(dim=-1).cpu() for xt, _ in streams]  # per layer, (T,)
    xe_norms = [xe[0].norm(dim=-1).cpu() for _, xe in streams]
    slider = _slider(ipywidgets.IntSlider, "layer", value=len(streams) - 1, min=0, max=len(streams) - 1)

    def update(values):
        layer = values["layer"]
        figure, (left, right) = _figure(9.0, 3.2, columns=2)
        positions = range(input_ids.shape[1])
        left.plot(positions, xt_norms[layer].numpy(), label="‖xt‖")
        left.plot(positions, xe_norms[layer].numpy(), label="‖xe‖")
        left.set_xlabel("position")
        left.set_ylabel("norm")
        left.set_title("after the embedding" if layer == 0 else f"after block {layer}")
        left.legend(fontsize=8)
        layers = range(len(streams))
        right.plot(layers, [float(n.mean()) for n in xt_norms], "o-", label="mean ‖xt‖")
        right.plot(layers, [float(n.mean()) for n in xe_norms], "o-", label="mean ‖xe‖")
        right.axvline(layer, color="#888888", linestyle=":")
        right.set_xlabel("blocks passed")
        right.set_ylabel("mean norm")
        right.set_xticks(list(layers))
        right.set_title("through the layers")
        right.legend(fontsize=8)
        rows = [[str(i), f"{float(t.mean()):.3f}", f"{float(e.mean()):.3f}"]
                for i, (t, e) in enumerate(zip(xt_norms, xe_norms))]
        text = (f"<p>Layer {layer}: mean ‖xt‖ = {float(xt_norms[layer].mean()):.3f}, "
                f"mean ‖xe‖ = {float(xe_norms[layer].mean()):.3f}. Attention adds to xt; the MLP adds "
                "to xe, which starts at zero.</p>" + _table(["blocks passed", "mean ‖xt‖", "mean ‖xe‖"],
                                                            rows, bold_row=layer))
        return _png(figure), text

    return _assemble("stream norms widget", {"layer": slider}, update, width="860px")


# -- channel mixing ------------------------------------------------------------------------------------

def channel_mix_widget(n_head: int = 3, head_dim: int = 4):
    """A small ``H x H`` value mix ``V`` with a slider per entry -> the ``C x C`` matrix
    ``V ⊗ I_d`` it stands for (block structure, never built by the model) and what each value head
    becomes: a weighted sum of whole head-blocks of ``xt``."""
    _require_int("n_head", n_head, 1, 6)  # one slider per entry of V: 36 at most
    _require_int("head_dim", head_dim, 1)
    entries = {f"V[{h},{g}]": _slider(ipywidgets.FloatSlider, f"V[{h},{g}]", value=float(h == g), min=-1.0,
                                      max=1.0, step=0.1, continuous_update=False,
                                      style={"description_width": "48px"},
                                      layout=ipywidgets.Layout(width="270px", min_width="270px"))
               for h in range(n_head) for g in range(n_head)}

    def update(values):
        mix = torch.tensor([[values[f"V[{h},{g}]"] for g in range(n_head)] for h in range(n_head)])
        lift = kronecker_lift(mix, head_dim)  # (C, C), only for showing
        figure, (left, right) = _figure(8.0, 3.4, columns=2)
        left.imshow(mix.numpy(), cmap="RdBu", vmin=-1, vmax=1)
        left.set_title(f"V ({n_head} x {n_head}): {n_head * n_head} numbers")
        left.set_xlabel("from head g")
        left.set_ylabel("to head h")
        left.set_xticks(range(n_head))
        left.set_yticks(range(n_head))
        image = right.imshow(lift.numpy(), cmap="RdBu", vmin=-1, vmax=1)
        C = n_head * head_dim
        right.set_title(f"V ⊗ I_{head_dim} ({C} x {C}): what it stands for")
        right.set_xlabel("input channel")
        right.set_ylabel("output channel")
        for edge in range(head_dim, C, head_dim):
            right.axhline(edge - 0.5, color="#888888", linewidth=0.5)
            right.axvline(edge - 0.5, color="#888888", linewidth=0.5)
        figure.colorbar(image, ax=right, shrink=0.8)
        # one position of xt, split into head-blocks x_g, and the value heads that V makes of it
        x = torch.randn(1, n_head, 1, head_dim, generator=torch.Generator().manual_seed(0))
        value = channel_mix(x, mix)[0, :, 0]  # (H, d)
        blocks = x[0, :, 0]  # (H, d)
        rows = []
        for h in range(n_head):
            terms = " ".join(f"{float(mix[h, g]):+.1f}·x<sub>{g}</sub>" for g in range(n_head))
            cosines = [float(torch.nn.functional.cosine_similarity(value[h], blocks[g], dim=0))
                       if value[h].norm() > 0 else 0.0 for g in range(n_head)]
            rows.append([f"value head {h}", terms, *(f"{c:+.2f}" for c in cosines)])
        text = ("<p>Each value head is a weighted sum of whole head-blocks x<sub>g</sub> of xt: the "
                f"{head_dim} channels inside a block are never mixed with each other, so the model "
                f"needs {n_head * n_head} numbers, not {C * C}.</p>"
                + _table(["", "= sum over g of V[h, g] · x_g", *(f"cos with x_{g}" for g in range(n_head))],
                         rows))
        return _png(figure), text

    rows = [[f"V[{h},{g}]" for g in range(n_head)] for h in range(n_head)]  # one row of V per line
    return _assemble("channel mixing widget", entries, update, width="760px", rows=rows)


# -- inside the streams: attention by head and the logit lens ------------------------------------------

def _token_label(tokenizer, token_id: int) -> str:
    """A token as a short visible label: spaces as ␣, newlines as ⏎."""
    text = tokenizer.decode([int(token_id)])
    return text.replace(" ", "␣").replace("\n", "⏎") or f"<{int(token_id)}>"


class _LensReadout:
    """What the model makes of one prompt: its token ids ``(T,)``, the logit lens (``logit_lens``:
    stream name -> ``(n_layer + 1, 1, T, vocab)``) and the attention maps ``(n_layer, n_head, T, T)``."""

    def __init__(self, ids: torch.Tensor, lens: dict, maps: torch.Tensor, labels: list[str]):
        self.ids, self.lens, self.maps, self.labels = ids, lens, maps, labels


def _read_prompt(model, tokenizer, text: str, max_tokens: int) -> _LensReadout | str:
    """Reading: run ``model`` on the first ``max_tokens`` tokens of ``text``; a ``_LensReadout``, or
    the reason, in words, that the prompt cannot be read."""
    from tfa_core.experiments.inspection import attention_maps, logit_lens

    try:
        ids = tokenizer.encode(text)[:max_tokens]
    except ValueError as error:
        return f"the tokenizer cannot encode this prompt: {error}"
    if not ids:
        return "type at least one token"
    ids = torch.tensor(ids)
    labels = [_token_label(tokenizer, i) for i in ids.tolist()]
    return _LensReadout(ids, logit_lens(model, ids), attention_maps(model, ids), labels)


def _slope_text(model, layer: int, head: int) -> str:
    own = model.transformer.h[layer - 1].attn.alibi_slopes  # a layer's own slopes, else the model's
    slope = model.alibi_slopes if own is None else own
    if slope is None:
        return f"no ALiBi slope ({model.position_scheme} positions)"
    m = float(slope[head])
    return f"slope {_power_of_two(m)}, half weight {math.log(2) / m:.1f} tokens back"


def _plot_attention(readout: _LensReadout, layer: int, head: int, query: int, slope_text: str) -> bytes:
    """Plotting: the query's attention row over keys ``0..query`` (its strongest key in red) beside
    the head's whole ``(T, T)`` map, with the query's row marked; a PNG."""
    row = readout.maps[layer - 1, head, query, : query + 1]
    strongest = int(row.argmax())
    figure, (left, right) = _figure(10.0, 3.4, columns=2)
    colours = ["#d62728" if j == strongest else "#1f77b4" for j in range(query + 1)]
    left.bar(range(query + 1), row.numpy(), color=colours)
    if query < 48:
        left.set_xticks(range(query + 1))
        left.set_xticklabels(readout.labels[: query + 1], fontsize=7)
    left.set_xlabel("key")
    left.set_ylabel("attention weight")
    left.set_title(f"layer {layer}, head {head}: query {query} ({readout.labels[query]})", fontsize=9)
    right.imshow(readout.maps[layer - 1, head].numpy(), cmap="viridis", vmin=0, vmax=1)
    right.axhline(query, color="#d62728", linewidth=1)
    right.set_xlabel("key j")
    right.set_ylabel("query i")
    right.set_title(f"the head's whole map ({slope_text})", fontsize=9)
    return _png(figure)


def _tabulate_lens(readout: _LensReadout, tokenizer, layer: int, head: int, query: int, slope_text: str,
                   top_k: int) -> str:
    """Tabulating: the attention row in words, then the ``top_k`` tokens that ``xt``, ``xe`` and
    ``xt + xe`` read as after ``layer`` at ``query`` (the input token in bold), as HTML."""
    from tfa_core.experiments.inspection import token_ranks

    labels = readout.labels
    row = readout.maps[layer - 1, head, query, : query + 1]
    strongest = int(row.argmax())
    mean_distance = float((row * torch.arange(query, -1, -1, dtype=row.dtype)).sum())
    streams = ("xt", "xe", "xt+xe")
    logits = {name: readout.lens[name][layer, 0, query] for name in streams}
    top = {name: torch.softmax(logits[name], dim=-1).topk(top_k) for name in streams}
    token = int(readout.ids[query])
    ranks = {name: int(token_ranks(logits[name], torch.tensor(token))) for name in streams}
    rows = []
    for k in range(top_k):
        cells = [str(k + 1)]
        for name in streams:
            tid, p = int(top[name].indices[k]), float(top[name].values[k])
            label = html.escape(_token_label(tokenizer, tid))
            cells.append(f"<b>{label}</b> {p:.3f}" if tid == token else f"{label} {p:.3f}")
        rows.append(cells)
    return (f"<p>Layer {layer}, head {head} ({slope_text}). Query {query} is "
            f"{html.escape(labels[query])!r}; its strongest key is position {strongest} "
            f"({html.escape(labels[strongest])!r}) with weight {float(row[strongest]):.3f}, and on average "
            f"it looks {mean_distance:.1f} tokens back.</p>"
            f"<p>Logit lens after layer {layer} at position {query}: the input token "
            f"{html.escape(labels[query])!r} ranks {ranks['xt']} in lens(xt), {ranks['xe']} in lens(xe) "
            f"and {ranks['xt+xe']} in lens(xt+xe) (0 = first; in bold when it is in the top {top_k}).</p>"
            + _table(["", "lens(xt)", "lens(xe)", "lens(xt+xe)"], rows))


def lens_attention_widget(model, tokenizer, prompt: str = "ROMEO:\nBut, soft! what light",
                          top_k: int = 5, max_tokens: int = 64):
    """Type a prompt; pick a layer, a head and a query position -> the attention of that query in
    that head (its row, and the head's whole map), and the logit lens of ``xt``, ``xe`` and
    ``xt + xe`` after that layer at that position: the ``top_k`` tokens each stream reads as.

    ``model``: a token-factored model; ``tokenizer``: the one it was trained with. The prompt is cut
    to its first ``max_tokens`` tokens. Controls: ``prompt`` (a multi-line text box, applied when it
    loses focus, so a newline the positions count is one the learner sees), ``layer``
    (1 .. n_layer), ``head`` and ``position``; the position slider follows the prompt's length. A
    prompt the tokenizer cannot encode shows the reason instead of a figure.
    """
    from tfa_core.model.factored import FactoredTransformerModelALiBi

    if not isinstance(model, FactoredTransformerModelALiBi):
        raise TypeError(f"lens_attention_widget needs a token-factored model (get_model('FactoredALiBi', "
                        f"config)), got {type(model).__name__}")
    _require_int("top_k", top_k, 1, model.config.vocab_size)
    _require_int("max_tokens", max_tokens, 1, model.max_sequence_length)
    n_layer, n_head = model.config.n_layer, model.config.n_head
    readouts: dict = {}

    def read(text: str) -> _LensReadout | str:  # the last prompt's readout is kept
        if text not in readouts:
            readouts.clear()
            readouts[text] = _read_prompt(model, tokenizer, text, max_tokens)
        return readouts[text]

    first = read(prompt)
    length = len(first.ids) if isinstance(first, _LensReadout) else 1
    lines = max(3, prompt.count("\n") + 2)
    controls = {
        "prompt": ipywidgets.Textarea(value=prompt, description="prompt", continuous_update=False, rows=lines,
                                      placeholder="type a prompt, then click outside the box",
                                      layout=ipywidgets.Layout(width="100%", max_width="720px")),
        "layer": _slider(ipywidgets.IntSlider, "layer", value=1, min=1, max=n_layer),
        "head": _slider(ipywidgets.IntSlider, "head", value=0, min=0, max=n_head - 1),
        # up to max_tokens values: a wider track, about 6 px a position
        "position": _slider(ipywidgets.IntSlider, "position", value=length - 1, min=0, max=max(1, length) - 1,
                            layout=ipywidgets.Layout(width="520px", min_width=SLIDER_WIDTH, flex="1 1 auto")),
    }

    def follow_prompt(change) -> None:  # registered before the refresh: the slider fits the new prompt first
        readout = read(change["new"])
        last = len(readout.ids) - 1 if isinstance(readout, _LensReadout) else 0
        controls["position"].max = last
        controls["position"].value = last  # a new prompt: look at its last token

    controls["prompt"].observe(follow_prompt, names="value")

    def update(values):
        readout = read(values["prompt"])
        if isinstance(readout, str):
            figure, ax = _figure(9.5, 1.2)
            ax.axis("off")
            ax.text(0.5, 0.5, "nothing to show", ha="center", va="center")
            return _png(figure), f"<p><b>{html.escape(readout, quote=False)}</b></p>"
        layer, head = values["layer"], values["head"]
        query = min(values["position"], len(readout.ids) - 1)
        slope_text = _slope_text(model, layer, head)
        return (_plot_attention(readout, layer, head, query, slope_text),
                _tabulate_lens(readout, tokenizer, layer, head, query, slope_text, top_k))

    return _assemble("logit lens and attention widget", controls, update, width="900px",
                     rows=[["prompt"], ["layer", "head", "position"]])
