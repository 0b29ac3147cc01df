"""The course widgets, driven from code: setting a control changes the figure and the table, and what
they show is right."""

import pytest
import torch

from tfa_core import GPTConfigALiBi, get_model
from tfa_core.teaching.widgets import (alibi_bias_widget, channel_mix_widget, slopes_widget,
                                       stream_norms_widget)

PNG = b"\x89PNG"


def shows(box):
    """What the widget shows now: the PNG bytes of its figure and the HTML of its table."""
    return bytes(box.figure.value), box.table.value


def test_slopes_widget_follows_the_number_of_heads():
    box = slopes_widget(n_head=4)
    before = shows(box)
    assert before[0].startswith(PNG)
    assert "a power of two: the closed form agrees" in before[1]
    box.controls["n_head"].value = 6
    figure, table = shows(box)
    assert figure != before[0] and table != before[1]
    assert "not a power of two" in table
    # the six slopes, in the authors' order, and the closed form disagreeing
    assert [cell for cell in ("2^-2", "2^-4", "2^-6", "2^-8", "2^-1", "2^-3") if cell in table] == \
        ["2^-2", "2^-4", "2^-6", "2^-8", "2^-1", "2^-3"]
    assert table.index("2^-8") < table.index("2^-1<")
    assert "✘" in table


def test_alibi_bias_widget_follows_head_and_length():
    box = alibi_bias_widget(n_head=8, length=24)
    first = shows(box)
    assert "Head 0: slope 0.5" in first[1]
    box.controls["head"].value = 3
    second = shows(box)
    assert second[0] != first[0]
    assert "Head 3: slope 0.0625" in second[1]
    box.controls["length"].value = 2
    third = shows(box)
    assert third[0] != second[0]
    # two keys, equal scores: weights proportional to 1 and exp(-1/16)
    newest = 1 / (1 + torch.exp(torch.tensor(-0.0625))).item()
    assert f"newest key gets weight {newest:.3f}" in third[1]
    assert "the last 2 keys get 100% of the weight" in third[1]


def test_stream_norms_widget_follows_the_layer():
    config = GPTConfigALiBi(n_layer=3, n_head=2, n_embd=16, block_size=8, vocab_size=20, dropout=0.0)
    model = get_model("FactoredALiBi", config).train()
    ids = torch.tensor([1, 5, 7, 7, 2, 9])
    box = stream_norms_widget(model, ids)
    assert model.training  # the widget restores the model's mode
    last = shows(box)
    box.controls["layer"].value = 0
    first = shows(box)
    assert first[0] != last[0] and first[1] != last[1]
    assert "mean ‖xe‖ = 0.000" in first[1]  # xe starts at zero
    with torch.no_grad():
        xt = model.transformer.wte(ids)
    assert f"mean ‖xt‖ = {xt.norm(dim=-1).mean().item():.3f}" in first[1]  # xt starts as the embeddings
    box.controls["layer"].value = 3
    assert "mean ‖xe‖ = 0.000" not in box.table.value


def test_stream_norms_widget_needs_a_factored_model():
    config = GPTConfigALiBi(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=20)
    with pytest.raises(TypeError, match="token-factored model"):
        stream_norms_widget(get_model("Vanilla", config), torch.tensor([1, 2]))


def test_channel_mix_widget_shows_the_mix_and_what_it_does():
    box = channel_mix_widget(n_head=3, head_dim=4)
    identity = shows(box)
    assert "9 numbers, not 144" in identity[1]
    # swap heads 0 and 1
    for name, value in {"V[0,0]": 0.0, "V[0,1]": 1.0, "V[1,0]": 1.0, "V[1,1]": 0.0}.items():
        box.controls[name].value = value
    figure, table = shows(box)
    assert figure != identity[0]
    row_head_0 = table.split("value head 0")[1].split("</tr>")[0]
    cosines = [cell.split("<")[0] for cell in row_head_0.split("'>")[2:]]
    assert cosines[1] == "+1.00"  # value head 0 is now exactly head-block 1


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="n_head must be between 1 and 16"):
        slopes_widget(n_head=0)
    with pytest.raises(ValueError, match="length must be between 2 and 128"):
        alibi_bias_widget(length=500)
    with pytest.raises(TypeError, match="head_dim must be an int"):
        channel_mix_widget(head_dim=2.5)


# -- lens_attention_widget (notebook 08) ---------------------------------------------------------------

def lens_model():
    from tfa_core import create_tokenizer

    tokenizer = create_tokenizer("character", text="abcdefgh ,.\n")
    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=len(tokenizer),
                            dropout=0.0)
    torch.manual_seed(0)
    return get_model("FactoredALiBi", config).eval(), tokenizer


def test_lens_attention_widget_shows_the_chosen_head_and_the_lens():
    from tfa_core.experiments.inspection import attention_maps, logit_lens
    from tfa_core.teaching.widgets import lens_attention_widget

    model, tokenizer = lens_model()
    box = lens_attention_widget(model, tokenizer, prompt="abc, dea", top_k=3)
    assert box.controls["position"].max == 7 and box.controls["position"].value == 7
    first = shows(box)
    assert first[0].startswith(PNG)
    ids = torch.tensor(tokenizer.encode("abc, dea"))
    maps = attention_maps(model, ids)
    lens = logit_lens(model, ids)
    box.controls["layer"].value = 2
    box.controls["head"].value = 3
    box.controls["position"].value = 5
    figure, table = shows(box)
    assert figure != first[0]
    row = maps[1, 3, 5, :6]
    j = int(row.argmax())
    assert f"strongest key is position {j}" in table and f"with weight {row[j].item():.3f}" in table
    assert "Query 5 is 'd'" in table and "slope 2^-8" in table  # head 3 of 4: m = 2^-8
    distance = (row * torch.arange(5, -1, -1)).sum().item()
    assert f"it looks {distance:.1f} tokens back" in table
    # the lens after layer 2 at position 5: the top token of xt+xe with its probability
    probabilities = torch.softmax(lens["xt+xe"][2, 0, 5], dim=-1)
    top = int(probabilities.argmax())
    label = tokenizer.decode([top]).replace(" ", "␣").replace("\n", "⏎")
    assert f"{probabilities[top].item():.3f}" in table.split("<tbody>")[1] and label in table
    # an untrained model's xt after two blocks still reads as its own token: rank 0, in bold
    assert "ranks 0 in lens(xt)" in table and "<b>d</b>" in table


def test_lens_attention_widget_follows_the_prompt():
    from tfa_core.teaching.widgets import lens_attention_widget

    model, tokenizer = lens_model()
    box = lens_attention_widget(model, tokenizer, prompt="abcdefgh")
    box.controls["prompt"].value = "ab"
    assert box.controls["position"].max == 1 and box.controls["position"].value == 1
    assert "Query 1 is 'b'" in box.table.value
    box.controls["prompt"].value = "abz"  # z is not in the vocabulary
    assert "cannot encode" in box.table.value and "'z'" in box.table.value
    box.controls["prompt"].value = ""
    assert "at least one token" in box.table.value
    box.controls["prompt"].value = "a"
    assert "Query 0 is 'a'" in box.table.value and "weight 1.000" in box.table.value


def test_lens_attention_widget_names_bad_arguments():
    from tfa_core.teaching.widgets import lens_attention_widget

    model, tokenizer = lens_model()
    with pytest.raises(TypeError, match="token-factored model"):
        vanilla = get_model("Vanilla",
                            GPTConfigALiBi(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=20))
        lens_attention_widget(vanilla, tokenizer)
    with pytest.raises(ValueError, match="max_tokens must be between 1 and 64"):
        lens_attention_widget(model, tokenizer, max_tokens=100)


# -- what a page without the widget front end shows, and layouts that fit --------------------------------

def every_widget():
    config = GPTConfigALiBi(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=20, dropout=0.0)
    from tfa_core.teaching.widgets import lens_attention_widget

    model, tokenizer = lens_model()
    return [slopes_widget(), alibi_bias_widget(), channel_mix_widget(),
            stream_norms_widget(get_model("FactoredALiBi", config), torch.tensor([1, 2, 3])),
            lens_attention_widget(model, tokenizer, prompt="ab\ncd")]


def test_display_data_carries_the_current_figure_not_the_repr():
    import base64

    for box in every_widget():
        bundle = box._repr_mimebundle_()
        assert set(bundle) == {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"}
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == box.model_id
        assert base64.b64decode(bundle["image/png"]) == bytes(box.figure.value)
        assert "VBox" not in bundle["text/plain"] and "run the notebook" in bundle["text/plain"]
    box = slopes_widget(n_head=4)
    box.controls["n_head"].value = 6  # the fallback is the figure shown now
    assert base64.b64decode(box._repr_mimebundle_()["image/png"]) == bytes(box.figure.value)


def test_sliders_keep_their_width_and_rows_wrap():
    import ipywidgets

    for box in every_widget():
        rows = [child for child in box.children if isinstance(child, ipywidgets.HBox)]
        assert rows and all(row.layout.flex_flow == "row wrap" for row in rows)
        for control in box.controls.values():
            if isinstance(control, (ipywidgets.IntSlider, ipywidgets.FloatSlider)):
                assert int(control.layout.min_width.removesuffix("px")) >= 270, control.description


def test_the_lens_prompt_shows_its_newlines():
    import ipywidgets
    from tfa_core.teaching.widgets import lens_attention_widget

    model, tokenizer = lens_model()
    box = lens_attention_widget(model, tokenizer, prompt="ab\ncd")
    assert isinstance(box.controls["prompt"], ipywidgets.Textarea)  # a newline is a visible line break
    assert box.controls["prompt"].rows >= 3
    assert box.controls["position"].max == 4  # a, b, the newline, c, d
    assert "Query 4 is 'd'" in box.table.value
    box.controls["position"].value = 2
    assert "Query 2 is '⏎'" in box.table.value


def test_saved_notebooks_show_figures_where_no_widget_front_end_runs():
    """Every widget output of the committed course carries its figure (or a finished progress bar),
    and no notebook carries widget state that only a script from a CDN could render."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("static_outputs", root / "book" / "static_outputs.py")
    static_outputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(static_outputs)
    widget_outputs = 0
    for path in sorted((root / "course").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        assert static_outputs.problems(notebook) == [], (
            f"{path.name}: run python book/static_outputs.py {path}")
        widget_outputs += sum(static_outputs.VIEW in output.get("data", {})
                              for cell in notebook["cells"] for output in cell.get("outputs", []))
    assert widget_outputs >= 6  # 02, 03 (two), 04, 06's progress bar, 08


def test_nbconvert_html_shows_the_widgets_figures_without_a_widget_script():
    from pathlib import Path

    import nbformat
    from nbconvert import HTMLExporter

    path = Path(__file__).resolve().parents[1] / "course" / "03_alibi.ipynb"
    notebook = nbformat.read(path, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(notebook)
    saved = [output["data"]["image/png"] for cell in notebook.cells for output in cell.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in output.get("data", {})]
    assert len(saved) == 2  # the slopes widget and the bias widget
    for png in saved:
        assert f"data:image/png;base64,{png.strip()}" in body
    assert "html-manager" not in body and "Box(children=" not in body
