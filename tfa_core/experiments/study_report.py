"""The study's runs made readable: tables with the spread over seeds, the report, the plots.

Every figure is a mean over seeds with its sample standard deviation (``n - 1``). A difference between
two variants is called only when the seeds *separate* it: every seed of one is below every seed of the
other (their ranges do not overlap). With three seeds that is a strict rule; the report says so, and
prints the ranges so a reader can judge the rest.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

__all__ = ["Spread", "spread", "separated", "flat_rows", "summarize", "ablation_rows", "load_study",
           "write_study_outputs", "write_report", "plot_study"]


class Spread:
    """Mean, sample standard deviation, range and count of a few numbers (one per seed); values
    that are not finite (a diverged run, a length a model cannot run) are left out and counted in
    ``missing``. With one value there is no standard deviation (NaN) and none is printed."""

    def __init__(self, values):
        values = list(values)
        self.values = [v for v in values if v is not None and math.isfinite(v)]
        self.missing = len(values) - len(self.values)
        self.n = len(self.values)
        self.mean = statistics.fmean(self.values) if self.values else math.nan
        self.sd = statistics.stdev(self.values) if self.n > 1 else math.nan
        self.low = min(self.values) if self.values else math.nan
        self.high = max(self.values) if self.values else math.nan

    def __str__(self) -> str:
        return self.cell(3)

    def cell(self, digits: int = 2) -> str:
        """``mean ± sd`` with ``digits`` decimals; the mean alone for one value; ``—`` for none."""
        if not self.n:
            return "—"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}" if self.n > 1 else f"{self.mean:.{digits}f}"


spread = Spread  # the name the tables read best with: spread(losses)


def separated(a: Spread, b: Spread) -> bool:
    """True when the seeds separate ``a`` from ``b``: at least two seeds each, and the ranges of
    their values do not overlap. One seed each can never separate anything."""
    return min(a.n, b.n) >= 2 and (a.high < b.low or b.high < a.low)


def _reported(records: list[dict], chosen: dict[str, float]) -> list[dict]:
    """The runs at each variant's chosen rate: the seeds that the tables average."""
    return [r for r in records if r["label"] in chosen and r["learning_rate"] == chosen[r["label"]]]


def summarize(records: list[dict], chosen: dict[str, float]) -> list[dict]:
    """One row per variant, length and mode: loss and perplexity, mean ± sd over the seeds at the
    chosen rate. ``runs`` counts those seeds' runs, ``diverged`` the ones that diverged (they have no
    evaluation), ``seeds`` the values averaged (none where a model cannot run the length)."""
    rows = []
    reported = _reported(records, chosen)
    for label in dict.fromkeys(r["label"] for r in reported):
        runs = [r for r in reported if r["label"] == label]
        first = runs[0]
        cells = {(e["length"], e["mode"]): e for r in runs for e in r["evaluations"]}  # any run's note
        for (length, mode), evaluation in sorted(cells.items(), key=lambda item: (item[0][0], item[0][1])):
            losses = [e["loss"] for r in runs for e in r["evaluations"]
                      if e["length"] == length and e["mode"] == mode]
            loss = spread(losses)
            perplexity = spread([math.exp(v) for v in losses if math.isfinite(v)])
            rows.append({"variant": label, "model": first["model"], "positions": first["positions"],
                         "architecture": first["architecture"], "ablation": first["ablation"],
                         "learning_rate": chosen[label], "length": length, "mode": mode,
                         "runs": len(runs), "diverged": sum(bool(r["diverged"]) for r in runs),
                         "seeds": loss.n, "loss_mean": loss.mean, "loss_sd": loss.sd,
                         "loss_min": loss.low, "loss_max": loss.high,
                         "perplexity_mean": perplexity.mean, "perplexity_sd": perplexity.sd,
                         "tokens_scored": evaluation["tokens_scored"], "note": evaluation["note"],
                         "losses": losses})
    return rows


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def flat_rows(records: list[dict], chosen: dict[str, float]) -> list[dict]:
    """One row per run, length and mode (``results.csv``, plus each row's ``loss_by_position``)."""
    return [{"variant": r["label"], "model": r["model"], "positions": r["positions"],
             "architecture": r["architecture"], "learning_rate": r["learning_rate"], "seed": r["seed"],
             "chosen": r["learning_rate"] == chosen[r["label"]],
             **{k: e[k] for k in ("length", "mode", "loss", "tokens_scored", "note")},
             "perplexity": math.exp(e["loss"]) if math.isfinite(e["loss"]) else math.nan,
             "train_seconds": r["train_seconds"], "loss_by_position": e["loss_by_position"]}
            for r in records for e in r["evaluations"]]


def write_study_outputs(out_dir, records: list[dict], chosen: dict[str, float], context: dict) -> list[dict]:
    """``results.csv`` (every run, length and mode), ``summary.csv`` (mean ± sd over seeds),
    ``sweep.csv`` (tuning loss of every rate tried), ``setup.json`` (the study's settings, and the
    base rate ``next_token_in_context`` that the ablation table is read against), ``report.md`` and
    the two plots. Returns the rows of ``results.csv``."""
    out_dir = Path(out_dir)
    (out_dir / "setup.json").write_text(json.dumps(context, indent=1) + "\n")
    rows = flat_rows(records, chosen)
    columns = [c for c in rows[0] if c != "loss_by_position"] if rows else ["variant"]
    _write_csv(out_dir / "results.csv", rows, columns)
    summary = summarize(records, chosen)
    columns = [c for c in summary[0] if c != "losses"] if summary else ["variant"]
    _write_csv(out_dir / "summary.csv", summary, columns)
    sweep = [{"variant": r["label"], "learning_rate": r["learning_rate"], "seed": r["seed"],
              "tune_loss": r["tune_loss"], "chosen": r["learning_rate"] == chosen[r["label"]],
              "diverged": r["diverged"]} for r in records if r["seed"] == context["seeds"][0]]
    _write_csv(out_dir / "sweep.csv", sweep,
               ["variant", "learning_rate", "seed", "tune_loss", "chosen", "diverged"])
    (out_dir / "report.md").write_text(write_report(records, chosen, **context))
    plot_study(records, chosen, out_dir, train_length=context["train_length"])
    return rows


def _rates_table(records: list[dict], chosen: dict[str, float], first_seed: int) -> list[str]:
    rates = sorted({r["learning_rate"] for r in records})
    lines = ["| variant | " + " | ".join(f"{r:.3g}" for r in rates) + " | chosen |",
             "|---|" + "---:|" * len(rates) + "---:|"]
    for label in dict.fromkeys(r["label"] for r in records):
        tried = {r["learning_rate"]: r["tune_loss"] for r in records
                 if r["label"] == label and r["seed"] == first_seed}
        cells = []
        for rate in rates:
            loss = tried.get(rate)
            text = "" if loss is None else ("diverged" if not math.isfinite(loss) else f"{loss:.3f}")
            cells.append(f"**{text}**" if rate == chosen[label] else text)
        at_edge = len(tried) > 1 and chosen[label] in (min(tried), max(tried))  # the grid stopped growing
        choice = f"{chosen[label]:.3g}" + (" (edge)" if at_edge else "")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {choice} |")
    return lines


def write_report(records: list[dict], chosen: dict[str, float], **context) -> str:
    """The Markdown report: the rate sweep, perplexity by length (mean ± sd over seeds) for each mode,
    the 2 x 2 of architecture and positions, and the ablations."""
    summary = summarize(records, chosen)
    train_length = context["train_length"]
    lengths = sorted({r["length"] for r in summary})
    seeds = context.get("seeds", [])
    lines = [f"# Length extrapolation ({context.get('recipe', '')} recipe)", "",
             "Setup: " + ", ".join(f"{k} {v}" for k, v in context.items()), "",
             "Every figure is the mean ± sample standard deviation over the seeds at the variant's chosen "
             "learning rate, evaluated on held-out text that the choice of rate never saw. A difference is "
             "called only where the seeds separate it (the ranges of the seeds do not overlap).", "",
             "## Learning rate per variant", "",
             f"Loss on the tuning text at the training length ({train_length}), "
             f"seed {seeds[0] if seeds else ''}; "
             "the lowest wins, and the grid grows past an end when the best rate sits there (at most "
             f"{context.get('max_extensions', 2)} times; '(edge)' marks a choice still at an end of the "
             "rates tried).", ""]
    lines += _rates_table(records, chosen, seeds[0] if seeds else records[0]["seed"]) + [""]
    labels = list(dict.fromkeys(r["variant"] for r in summary))
    for mode in ("non_overlapping", "sliding"):
        lines += [f"## Perplexity, {mode.replace('_', '-')} windows", "",
                  "| variant | positions | lr | "
                  + " | ".join(f"{n} ({n / train_length:g}x)" for n in lengths) + " |",
                  "|---|---|---:|" + "---:|" * len(lengths)]
        for label in labels:
            cells = {r["length"]: r for r in summary if r["variant"] == label and r["mode"] == mode}
            first = next(iter(cells.values()))
            lines.append(f"| {label} | {first['positions']} | {first['learning_rate']:.3g} | " + " | ".join(
                spread([math.exp(v) for v in cells[n]["losses"]]).cell(2) if n in cells else "—"
                for n in lengths) + " |")
        lines.append("")
    lines += _grid_section(summary, train_length)
    lines += _ablation_section(records, chosen, train_length, context.get("next_token_in_context", math.nan))
    notes = sorted({f"{r['variant']}: {r['note']}" for r in summary if r["note"]})
    if notes:
        lines += ["Lengths a model cannot run are shown as —:", ""] + [f"- {n}" for n in notes] + [""]
    diverged = [f"{r['label']} at rate {r['learning_rate']:.3g}, seed {r['seed']}"
                for r in records if r["diverged"]]
    if diverged:
        lines += ["Runs that diverged (no evaluation; left out of the means, counted in `summary.csv`):", ""]
        lines += [f"- {run}" for run in diverged] + [""]
    return "\n".join(lines)


def _verdict(a: Spread, b: Spread) -> str:
    if min(a.n, b.n) < 2:
        return "one seed: no verdict"
    return "separated by the seeds" if separated(a, b) else "not separated by the seeds"


def _loss_at(summary: list[dict], label: str, length: int) -> Spread | None:
    row = next((r for r in summary if r["variant"] == label and r["length"] == length
                and r["mode"] == "non_overlapping"), None)
    return spread(row["losses"]) if row is not None and row["seeds"] else None


def _grid_section(summary: list[dict], train_length: int) -> list[str]:
    names = {("standard", "learned"): "Vanilla", ("standard", "alibi"): "VanillaALiBi",
             ("factored", "learned"): "Factored", ("factored", "alibi"): "FactoredALiBi"}
    cells = {key: _loss_at(summary, name, train_length) for key, name in names.items()}
    if any(cell is None for cell in cells.values()):
        return []
    lines = [f"## Validation loss at the training length ({train_length}): architecture x positions", "",
             "| | learned positions | ALiBi |", "|---|---:|---:|",
             f"| standard block | {cells['standard', 'learned']} | {cells['standard', 'alibi']} |",
             f"| factored block | {cells['factored', 'learned']} | {cells['factored', 'alibi']} |", ""]
    for positions in ("learned", "alibi"):
        x, y = cells["standard", positions], cells["factored", positions]
        lines.append(f"- {positions}: factored − standard = {y.mean - x.mean:+.3f} nats ({_verdict(x, y)})")
    for architecture in ("standard", "factored"):
        x, y = cells[architecture, "learned"], cells[architecture, "alibi"]
        lines.append(f"- {architecture} block: ALiBi − learned = {y.mean - x.mean:+.3f} nats "
                     f"({_verdict(x, y)})")
    return lines + [""]


def ablation_rows(records: list[dict], chosen: dict[str, float], train_length: int) -> list[dict]:
    """The ablation table: ``FactoredALiBi``, each ablation, and ``VanillaALiBi`` for scale. Each row
    has the chosen ``learning_rate``, the ``loss`` at the training length (a :class:`Spread` over
    seeds), ``versus`` (its mean minus FactoredALiBi's) and ``separated`` (whether the seeds separate
    the two), and ``xt`` / ``xt+xe``: how often the logit lens of that stream after the last block names
    a token of the context (single-stream models have one stream, shown in both)."""
    summary = summarize(records, chosen)
    ablations = dict.fromkeys(r["label"] for r in records if r["ablation"])
    labels = [label for label in ("FactoredALiBi", *ablations, "VanillaALiBi") if label in chosen]
    reference = _loss_at(summary, "FactoredALiBi", train_length)
    rows = []
    for label in labels:
        loss = _loss_at(summary, label, train_length)
        reads = [r["reads_as_context"] for r in _reported(records, chosen) if r["label"] == label]
        compared = label != "FactoredALiBi" and reference is not None and loss is not None
        rows.append({"variant": label, "learning_rate": chosen[label], "loss": loss,
                     "versus": loss.mean - reference.mean if compared else None,
                     "separated": separated(loss, reference) if compared else None,
                     "xt": spread([read.get("xt", read.get("x", math.nan)) for read in reads]),
                     "xt+xe": spread([read.get("xt+xe", read.get("x", math.nan)) for read in reads])})
    return rows


def _ablation_section(records: list[dict], chosen: dict[str, float], train_length: int,
                      next_in_context: float) -> list[str]:
    if not any(r["ablation"] for r in records):
        return []
    lines = ["## What the factored block's choices cost: ablations", "",
             f"Loss at the training length ({train_length}, non-overlapping windows) and how token-like "
             "the streams stay: the share of positions whose logit lens after the last block names a token "
             "of the context (notebooks 02 and 08). 'values from xt + xe' computes the same function as "
             "'the MLP writes xt' (one stream; `xt + xe` is that stream). Read it against the base rate: "
             f"the next token is already in the context at {next_in_context:.1%} of these positions, so a "
             "stream that predicts the next token perfectly would read as context that often.", "",
             "| variant | lr | loss | vs FactoredALiBi | xt reads as context | xt + xe reads as context |",
             "|---|---:|---:|---:|---:|---:|"]
    rows = ablation_rows(records, chosen, train_length)
    reference = rows[0]["loss"] if rows and rows[0]["variant"] == "FactoredALiBi" else None
    for row in rows:
        versus = "" if row["versus"] is None else (
            f"{row['versus']:+.3f} ({_verdict(row['loss'], reference)})")
        lines.append(f"| {row['variant']} | {row['learning_rate']:.3g} | {row['loss'] or '—'} | {versus} "
                     f"| {row['xt'].cell(3)} | {row['xt+xe'].cell(3)} |")
    return lines + [""]


def load_study(out_dir) -> tuple[list[dict], dict[str, float]]:
    """The records of every run saved in a study folder and the chosen rate of each variant, as
    ``run_extrapolation_study`` left them: what notebooks read to show a committed study."""
    out_dir = Path(out_dir)
    chosen = json.loads((out_dir / "chosen.json").read_text())["learning_rates"]
    records = [json.loads(path.read_text()) for path in sorted((out_dir / "runs").glob("*/*.json"))]
    records = [r for r in records if r["label"] in chosen]  # a variant never finished has no choice yet
    order = {label: i for i, label in enumerate(chosen)}
    records.sort(key=lambda r: (order.get(r["label"], len(order)), r["learning_rate"], r["seed"]))
    return records, chosen


def _log_binned(values: list[float], bins: int = 24) -> tuple[list[float], list[float]]:
    """Mean of ``values`` (indexed by position 1..n) in bins evenly spaced on a log scale: one
    point per bin instead of thousands of noisy ones."""
    n = len(values)
    edges = sorted({1, *(round(n ** (i / bins)) for i in range(bins + 1))})
    xs, ys = [], []
    for lo, hi in zip(edges, edges[1:] + [n + 1]):
        chunk = values[lo - 1:hi - 1]
        if chunk:
            xs.append((lo * (hi - 1)) ** 0.5)
            ys.append(sum(chunk) / len(chunk))
    return xs, ys


def plot_study(records: list[dict], chosen: dict[str, float], out_dir, train_length: int) -> None:
    """``perplexity.png``: perplexity against evaluation length with the seeds' standard deviation as
    error bars, one panel per mode (position schemes; ablations are in the report's table);
    ``loss_by_position.png``: loss at each position of the longest window, averaged over seeds."""
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    summary = [r for r in summarize(records, chosen) if not r["ablation"]]
    labels = list(dict.fromkeys(r["variant"] for r in summary))
    fig = Figure(figsize=(12.5, 4.4))
    for i, mode in enumerate(("non_overlapping", "sliding")):
        ax = fig.add_subplot(1, 2, i + 1)
        for label in labels:
            points = [(r["length"], r["perplexity_mean"], r["perplexity_sd"] if r["seeds"] > 1 else 0.0)
                      for r in summary if r["variant"] == label and r["mode"] == mode and r["seeds"]]
            if points:
                xs, ys, errors = zip(*points)
                style = "-" if label.startswith("Factored") else "--"
                ax.errorbar(xs, ys, yerr=errors, marker="o", linestyle=style, capsize=3, label=label)
        ax.axvline(train_length, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("evaluation length (tokens)")
        ax.set_ylabel("perplexity (mean ± sd over seeds)")
        ax.set_title(f"{mode.replace('_', '-')} windows (trained at {train_length})")
        ax.grid(alpha=0.3, which="both")
    fig.legend(*fig.axes[0].get_legend_handles_labels(), fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.83, 1))  # room on the right for the legend
    fig.savefig(out_dir / "perplexity.png", dpi=110)

    reported = [r for r in _reported(records, chosen) if not r["ablation"]]
    longest = max((e["length"] for r in reported for e in r["evaluations"]), default=train_length)
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    means = {}
    for label in labels:
        curves = [e["loss_by_position"] for r in reported if r["label"] == label for e in r["evaluations"]
                  if e["length"] == longest and e["mode"] == "non_overlapping" and e["loss_by_position"]]
        if curves:
            mean = [sum(values) / len(values) for values in zip(*curves)]
            means[label] = mean
            ax.plot(*_log_binned(mean), label=label, marker=".")
    ax.axvline(train_length, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("position in the window (tokens of context)")
    ax.set_ylabel("mean loss (nats), mean over seeds")
    ax.set_title(f"loss by position (log-spaced bins), non-overlapping windows of {longest}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "loss_by_position.png", dpi=110)
    (out_dir / "loss_by_position.json").write_text(json.dumps({f"{label}/non_overlapping/{longest}": values
                                                               for label, values in means.items()}))
