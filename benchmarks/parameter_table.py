"""Print the exact parameter count of every registered model for each preset (GPT-2 vocabulary;
the character preset with the 81 symbols of the Markdown-stripped Shakespeare corpus).

    python benchmarks/parameter_table.py

The counts come from the formulas in tfa_core.model.parameters, which the test suite checks against the
built models; here the small presets are also built and counted, as a second check.
"""

from tfa_core import estimate_model_parameters, get_model, list_available_models, load_alibi_config_preset

SIZES = ["character", "small", "medium", "large"]


def main():
    models = list_available_models()
    print(f"{'preset':<10} {'shape':<14}" + "".join(f"{m:>15}" for m in models)
          + f"{'saving vs Vanilla':>20}")
    for preset in SIZES:
        config = load_alibi_config_preset(preset, vocab_size=50257 if preset != "character" else 81)
        counts = [estimate_model_parameters(config, m) for m in models]
        if preset in ("character", "small"):  # cheap enough to build and count for real
            built = [sum(p.numel() for p in get_model(m, config.copy()).parameters()) for m in models]
            if built != counts:
                raise SystemExit(f"formula and model disagree for {preset}: {counts} vs {built}")
        shape = f"{config.n_layer}L-{config.n_head}H-{config.n_embd}D"
        saving = 1 - counts[0] / counts[2]
        print(f"{preset:<10} {shape:<14}" + "".join(f"{c:>15,}" for c in counts) + f"{saving:>19.1%}")


if __name__ == "__main__":
    main()
