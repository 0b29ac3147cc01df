"""The reference reads top to bottom: one training forward pass of FactoredALiBi runs through few
places in tfa_core, so a reader can follow it (issue #12). Counted with sys.setprofile over the
package's own files; each function is one code object (Block.forward and MLP.forward are two)."""

import os
import sys

import torch

import tfa_core
from tfa_core import get_model, load_alibi_config_preset

PACKAGE = os.path.dirname(tfa_core.__file__)


def functions_run(model, *args, **kwargs) -> set[tuple[str, str]]:
    seen = set()

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(PACKAGE):
            seen.add((os.path.relpath(code.co_filename, PACKAGE),
                      f"{code.co_qualname}:{code.co_firstlineno}"))

    sys.setprofile(profile)
    try:
        model(*args, **kwargs)
    finally:
        sys.setprofile(None)
    return seen


def test_a_training_forward_pass_runs_through_three_files_and_twelve_functions():
    model = get_model("FactoredALiBi", load_alibi_config_preset("character", vocab_size=65)).train()
    ids = torch.randint(0, 65, (2, 128))
    seen = functions_run(model, input_ids=ids, labels=ids)
    files = {path for path, _ in seen}
    assert files == {os.path.join("model", "factored.py"), os.path.join("model", "common.py"),
                     os.path.join("model", "alibi.py")}, sorted(seen)
    assert len(seen) <= 12, sorted(seen)


def test_the_model_holds_no_private_torch_attribute():
    source = open(os.path.join(PACKAGE, "model", "factored.py")).read()
    source += open(os.path.join(PACKAGE, "model", "common.py")).read()
    for private in ("._version", "._buffers", "._parameters", "._modules", "_load_from_state_dict"):
        assert private not in source
