"""A model of your own (issue #19): register_model, a position scheme of its own, tfa --import, and the
exact example of docs/EXTENDING.md trained, saved, loaded in a fresh process and inspected."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tfa_core import (CausalLanguageModel, FactoredTransformer, GPTConfigALiBi, VanillaGPT,
                      estimate_model_parameters, get_model, load_checkpoint, register_model)
from tfa_core.cli import MODELS_ENV, import_models, main
from tfa_core.experiments.inspection import attention_maps
from tfa_core.model.common import merge_heads, split_heads
from tfa_core.model.registry import MODEL_REGISTRY, USER_MODELS, known_position_schemes, position_scheme_of
from tfa_core.training.checkpoint import UnregisteredModelError, find_resumable

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN_SCHEMES = ["alibi", "learned", "sinusoidal", "rotary", "none"]
TEXT = "Now is the winter of our discontent made glorious summer by this sun of York.\n" * 60


@pytest.fixture(autouse=True)
def registry_as_it_was():
    """Every test leaves the registry (and the example's module) as it found them."""
    models, user = dict(MODEL_REGISTRY), set(USER_MODELS)
    yield
    MODEL_REGISTRY.clear()
    MODEL_REGISTRY.update(models)
    USER_MODELS.clear()
    USER_MODELS.update(user)
    for name in [name for name in sys.modules if name.startswith("tfa_user_models.")]:
        del sys.modules[name]


@pytest.fixture
def example(tmp_path):
    """docs/EXTENDING.md's kerple_models.py, written out as it is printed there."""
    text = (ROOT / "docs" / "EXTENDING.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    source = next(block for block in blocks if block.startswith('"""kerple_models.py'))
    path = tmp_path / "kerple_models.py"
    path.write_text(source)
    return path


def tiny_config(**changes):
    return GPTConfigALiBi(**{**dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=40,
                                    dropout=0.0), **changes})


class Shifted(FactoredTransformer):
    """A scheme of its own: every key before the query gets -1, the query's own key 0."""

    fixed_position_scheme = "shifted"

    def position_bias(self, t_q, t_k, device):
        query = torch.arange(t_k - t_q, t_k, device=device)[:, None]
        return -(torch.arange(t_k, device=device)[None, :] < query).float()[None]  # (1, t_q, t_k)


# -- register_model -------------------------------------------------------------------------------

def test_a_registered_model_is_built_counted_and_reported_by_its_own_scheme():
    assert register_model("Shifted", Shifted) is Shifted
    assert MODEL_REGISTRY["Shifted"] == (Shifted, "shifted")
    assert position_scheme_of("Shifted") == "shifted"
    assert known_position_schemes() == BUILT_IN_SCHEMES + ["shifted"]
    model = get_model("Shifted", tiny_config())
    assert model.position_scheme == model.config.position_scheme == "shifted"
    assert model.alibi_slopes is None  # no ALiBi hiding behind it
    assert estimate_model_parameters(model.config) == sum(p.numel() for p in model.parameters())


def test_the_bias_the_model_uses_is_the_hook_plus_the_causal_mask():
    register_model("Shifted", Shifted)
    model = get_model("Shifted", tiny_config()).eval()
    ids = torch.tensor([[1, 2, 3]])
    bias = model.attention_bias(None, 3, 3, None, model.embed(ids))
    inf = float("-inf")
    assert bias.tolist() == [[[[0.0, inf, inf], [-1.0, 0.0, inf], [-1.0, -1.0, 0.0]]]]
    padded = model.attention_bias(None, 3, 3, torch.tensor([[0, 1, 1]]), model.embed(ids))
    assert padded[0, 0, 2].tolist() == [inf, -1.0, 0.0]  # the padded key is masked too
    decoding = model.attention_bias(None, 1, 3, None, model.embed(ids[:, :1]))
    assert decoding.tolist() == [[[[-1.0, -1.0, 0.0]]]]  # one new query after two cached keys


def test_register_model_as_a_decorator_with_a_scheme_it_declares():
    @register_model("Near", position_scheme="near")
    class Near(FactoredTransformer):
        def position_bias(self, t_q, t_k, device):
            return torch.zeros(1, t_q, t_k, device=device)

    assert isinstance(Near, type) and position_scheme_of("Near") == "near"
    assert get_model("Near", tiny_config()).position_scheme == "near"


def test_a_built_in_scheme_registers_as_it_is():
    register_model("Deep", FactoredTransformer)
    assert position_scheme_of("Deep") == "alibi"
    register_model("DeepRotary", FactoredTransformer, position_scheme="rotary")
    assert get_model("DeepRotary", tiny_config()).transformer.h[0].attn.rotary


@pytest.mark.parametrize("args, kwargs, error, words", [
    ((3, Shifted), {}, ValueError, "non-empty str"),
    (("two words", Shifted), {}, ValueError, "without spaces or commas"),
    (("a,b", Shifted), {}, ValueError, "without spaces or commas"),
    (("FactoredALiBi", Shifted), {}, ValueError, "already taken .*replace=True"),
    (("Mine", nn.Linear), {}, TypeError, "subclass of tfa_core.CausalLanguageModel"),
    (("Mine", object()), {}, TypeError, "subclass of tfa_core.CausalLanguageModel"),
    (("Mine", FactoredTransformer), {"position_scheme": "kerple"}, ValueError, "must define position_bias"),
    (("Mine", FactoredTransformer), {"position_scheme": "bad name"}, ValueError, "position_scheme must be"),
    (("Mine", Shifted), {"position_scheme": "alibi"}, ValueError, "fixes its position scheme to 'shifted'"),
], ids=["name type", "space", "comma", "taken", "not a model", "an instance", "no bias", "bad scheme",
        "against the class"])
def test_register_model_refuses_what_would_not_work(args, kwargs, error, words):
    with pytest.raises(error, match=words):
        register_model(*args, **kwargs)


def test_a_bias_hook_under_a_built_in_scheme_is_refused_not_ignored():
    class Unnamed(FactoredTransformer):  # would be reported, and run, as "alibi"
        def position_bias(self, t_q, t_k, device):
            return torch.zeros(1, t_q, t_k)

    with pytest.raises(ValueError, match="registers the built-in scheme 'alibi'"):
        register_model("Unnamed", Unnamed)
    assert "Unnamed" not in MODEL_REGISTRY


def test_replace_takes_an_existing_name():
    register_model("Shifted", Shifted)
    with pytest.raises(ValueError, match="already taken"):
        register_model("Shifted", FactoredTransformer)
    register_model("Shifted", FactoredTransformer, replace=True)
    assert MODEL_REGISTRY["Shifted"] == (FactoredTransformer, "alibi")


def test_the_config_knows_a_scheme_once_its_model_is_registered():
    with pytest.raises(ValueError, match="unknown position_scheme 'shifted'.*register_model"):
        tiny_config(position_scheme="shifted")
    with pytest.raises(ValueError, match="unknown model_type 'Shifted'.*register_model"):
        tiny_config(model_type="Shifted")
    register_model("Shifted", Shifted)
    assert tiny_config(model_type="Shifted", position_scheme="shifted").position_scheme == "shifted"


def test_a_class_with_a_scheme_of_its_own_needs_the_hook():
    class NoHook(CausalLanguageModel):
        fixed_position_scheme = "mystery"

    with pytest.raises(ValueError, match="unknown position scheme 'mystery'.*position_bias"):
        NoHook(tiny_config(), lambda config, scheme: nn.Identity())


# -- the example of docs/EXTENDING.md, end to end ---------------------------------------------------

def attention_outputs(model, ids):
    """What each block's attention adds to xt, and the streams, from hooks on the model itself."""
    outputs = []
    handles = [block.attn.register_forward_hook(lambda m, args, out: outputs.append(out))
               for block in model.transformer.h]
    with torch.no_grad():
        streams = model(ids, return_streams=True)["streams"]
    for handle in handles:
        handle.remove()
    return outputs, streams


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tfa_core.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_the_documented_kerple_model_trains_saves_loads_and_shows_its_own_attention(example, tmp_path):
    corpus, run = tmp_path / "corpus.txt", tmp_path / "run"
    corpus.write_text(TEXT)
    train = ["--import", str(example), "train", "--model", "FactoredKerple", "--data", str(corpus),
             "--n-layer", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "8", "--steps", "20",
             "--lr", "3e-3", "--warmup-steps", "2", "--log-interval", "1", "--eval-interval", "20",
             "--eval-tokens", "256", "--dropout", "0", "--no-progress", "--out", str(run)]
    assert main(train) == 0
    assert position_scheme_of("FactoredKerple") == "kerple"
    losses = [r["loss"] for r in map(json.loads, (run / "history.jsonl").read_text().splitlines())
              if r["kind"] == "train"]
    assert len(losses) == 20 and losses[-1] < losses[0] - 0.5  # it learns

    # a fresh process: with the import every command loads it; without, one line says what to do
    info = run_cli("--import", str(example), "info", str(run))
    assert info.returncode == 0, info.stderr
    assert "FactoredKerple" in info.stdout and re.search(r"position_scheme +kerple", info.stdout)
    sample = run_cli("generate", str(run), "--max-new-tokens", "5", "--greedy",
                     env={MODELS_ENV: str(example)})
    assert sample.returncode == 0, sample.stderr
    alone = run_cli("info", str(run))
    assert alone.returncode == 2 and len(alone.stderr.strip().splitlines()) == 1
    assert "'FactoredKerple' model, which is not registered" in alone.stderr and "--import" in alone.stderr

    # the maps are the model's own: maps @ values is what each block's attention adds to xt ...
    model = load_checkpoint(run).model.eval()
    assert model.position_scheme == "kerple" and float(model.log_r1.detach().abs().max()) > 0  # trained
    ids = torch.tensor([[3, 7, 1, 12, 5, 5, 9, 0, 2, 11]])
    maps = attention_maps(model, ids)
    outputs, streams = attention_outputs(model, ids)
    for layer in range(model.config.n_layer):
        y = merge_heads(maps[layer][None] @ split_heads(streams[layer][0], 4))
        torch.testing.assert_close(y, outputs[layer], atol=1e-5, rtol=0, msg=f"layer {layer}")
    # ... and with every score equal, the probabilities are KERPLE's bias alone, by hand
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight.zero_()
    r1, r2 = model.log_r1.detach().exp(), model.log_r2.detach().exp()
    distance = torch.arange(9, -1, -1).float()  # the last of 10 queries, to keys 0..9
    expected = torch.softmax(-r1[:, None] * torch.log1p(r2[:, None] * distance), dim=-1)  # (H, 10)
    torch.testing.assert_close(attention_maps(model, ids)[1, :, -1], expected, atol=1e-6, rtol=0)
    head = 3  # one number written out: the newest key's share
    share = 1 / sum(math.exp(-r1[head].item() * math.log1p(r2[head].item() * k)) for k in range(10))
    assert attention_maps(model, ids)[0, head, -1, -1].item() == pytest.approx(share, rel=1e-5)


def test_a_checkpoint_of_an_unregistered_model_names_it(example, tmp_path):
    import_models(str(example))
    from tfa_core import Trainer, TrainingConfig

    model = get_model("FactoredKerple", tiny_config())
    config = TrainingConfig(max_steps=2, batch_size=2, eval_interval=2, out_dir=str(tmp_path), progress=False)
    Trainer(model, torch.randint(0, 40, (500,)), None, config).fit()
    del MODEL_REGISTRY["FactoredKerple"]
    with pytest.raises(UnregisteredModelError, match="'FactoredKerple' model, which is not registered"):
        load_checkpoint(tmp_path)
    with pytest.raises(UnregisteredModelError, match="tfa --import"):
        find_resumable(tmp_path)  # never passed over as if it were damaged


def test_attention_maps_name_the_layers_they_cannot_read():
    class Plain(VanillaGPT):
        pass

    register_model("Plain", Plain)
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(TypeError, match="layer 0 of Plain is a CausalSelfAttention, which cannot"):
        attention_maps(get_model("Plain", tiny_config()), ids)
    model = get_model("FactoredALiBi", tiny_config())
    model.transformer.h[1].attn.forward = lambda h, xt, bias, cache=None: torch.zeros_like(xt)
    with pytest.raises(ValueError, match=r"layers \[1\] of FactoredTransformer kept no probabilities"):
        attention_maps(model, ids)
    assert not any(block.attn.keep_weights for block in model.transformer.h)  # put back as it was


# -- tfa --import --------------------------------------------------------------------------------

def test_import_models_takes_a_file_once_and_a_module_name(example):
    first = import_models(str(example))
    assert import_models(str(example)) is first  # named twice: imported once, registered once
    assert first.__name__ == "tfa_user_models.kerple_models" and "kerple_models" not in sys.modules
    assert "FactoredKerple" in MODEL_REGISTRY
    assert import_models("json") is json


def test_a_file_named_like_a_module_never_takes_its_place(tmp_path):
    # in a fresh process: json is imported already, colorsys not yet
    code = """if True:
        import sys
        from pathlib import Path
        from tfa_core.cli import import_models
        folder = Path(sys.argv[1])
        for name in ("json", "colorsys"):
            (folder / f"{name}.py").write_text(
                "from tfa_core import register_model, FactoredTransformer\\n"
                f"register_model('Mine_{name}', FactoredTransformer)\\n")
        assert "colorsys" not in sys.modules
        for name in ("json", "colorsys"):
            mine = import_models(str(folder / f"{name}.py"))
            assert mine.__name__ == f"tfa_user_models.{name}"
            real = __import__(name)
            assert real is not mine and Path(real.__file__).parent != folder, real.__file__
        import colorsys
        assert colorsys.rgb_to_hsv(1, 0, 0) == (0.0, 1.0, 1.0)
        from tfa_core.model.registry import MODEL_REGISTRY
        assert {"Mine_json", "Mine_colorsys"} <= set(MODEL_REGISTRY)
        print("ok")
    """
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_two_files_of_the_same_name_are_two_modules(tmp_path):
    for folder, model in (("a", "FromA"), ("b", "FromB")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "models.py").write_text(
            f"from tfa_core import register_model, FactoredTransformer\nregister_model('{model}', "
            "FactoredTransformer)\n")
    first, second = (import_models(str(tmp_path / folder / "models.py")) for folder in ("a", "b"))
    assert (first.__name__, second.__name__) == ("tfa_user_models.models", "tfa_user_models.models_2")
    assert {"FromA", "FromB"} <= set(MODEL_REGISTRY)
    assert import_models(str(tmp_path / "b" / "models.py")) is second


def test_import_mistakes_are_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("from tfa_core import register_model, FactoredTransformer\n"
                      "register_model('FactoredALiBi', FactoredTransformer)\n")
    cases = [(["--import", str(tmp_path / "none.py"), "info", "x"], "none.py: no such file"),
             (["--import=no_such_module_here", "info", "x"], "ModuleNotFoundError"),
             (["--import", str(broken), "info", "x"], "importing .*broken.py failed: ValueError: the model "
                                                       "name 'FactoredALiBi' is already taken"),
             (["train", "--model", "Kerple", "--out", "x"], "unknown model 'Kerple'.*tfa --import")]
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert re.search(words, err) and len(err.strip().splitlines()) == 1, err
    assert "tfa_user_models.broken" not in sys.modules and "broken" not in sys.modules


def test_tfa_models_and_the_flag_add_up(example, tmp_path, monkeypatch, capsys):
    other = tmp_path / "other_models.py"
    other.write_text("from tfa_core import register_model, FactoredTransformer\n"
                     "register_model('Other', FactoredTransformer, position_scheme='rotary')\n")
    monkeypatch.setenv(MODELS_ENV, str(other))
    assert main(["--import", str(example), "train", "--model", "FactoredKerple", "--steps", "0",
                 "--out", str(tmp_path / "r")]) == 2  # a flag mistake, after both imports
    assert "--steps: must be 1 or more" in capsys.readouterr().err
    assert {"Other", "FactoredKerple"} <= set(MODEL_REGISTRY)
