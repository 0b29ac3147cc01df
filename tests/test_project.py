"""The project's own promises: conda and pip users get the same dependencies, CI runs the README's
test command, and the public names of the tutorial exist."""

import re
import tomllib
from pathlib import Path

import tfa_core

ROOT = Path(__file__).resolve().parents[1]


def pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return set(project["dependencies"]) | set(extras["dev"]) | set(extras["course"])


def environment_requirements():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    pins = [line.strip()[2:].strip() for line in lines[start + 1:] if line.strip().startswith("- ")]
    return {pin for pin in pins if pin != "-e ."}


def test_environment_yml_and_pyproject_list_the_same_dependencies():
    assert environment_requirements() == {re.sub(r"\s+", "", r) for r in pyproject_requirements()}


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)", quick_start, flags=re.M)
    assert commands == ["make course", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_top_level_layout():
    for folder in ("course", "tfa_core", "solutions", "tests"):
        assert (ROOT / folder).is_dir(), folder


def test_the_tutorial_names_are_public():
    for name in ("get_model", "list_available_models", "GPTConfigALiBi", "load_alibi_config_preset",
                 "print_config_alibi", "estimate_model_parameters", "create_tokenizer",
                 "prepare_causal_lm_dataset", "FactoredTransformerModelALiBi"):
        assert hasattr(tfa_core, name), name
