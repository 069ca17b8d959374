"""LMEvaluator's human-readable outputs: report.md (a Markdown table and the decision) and
loss_curves.png (the training run's loss curves with the other models' val losses as lines)."""

from __future__ import annotations

import io
import os
from typing import List, Optional

from components import artifact_layout
from components.lm_evaluator.evaluate import ModelResult
from components.lm_evaluator.metrics import METRICS
from core.shards import SPLITS
from core import files

ROLE_TITLES = {"candidate": "candidate", "last_blessed": "last blessed", "unigram": "unigram baseline",
               "baseline": "baseline"}
BASELINE_COLORS = ["tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]


def read_history(model_run_uri: Optional[str]) -> Optional[dict]:
    """history.json of a ModelRun artifact: {"eval": [[iter, train, val], ...], "train": [[iter,
    loss], ...]}, or None when there is no run or no history in it."""
    if not model_run_uri:
        return None
    return files.read_json(os.path.join(model_run_uri, artifact_layout.HISTORY_FILE), default=None)


def _loss(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.4f}"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


def markdown(results: List[ModelResult], *, blessed: bool, reason: str, settings: dict, notes: List[str],
             data: str, references: Optional[dict] = None) -> str:
    """The report: the decision, a row per model (every metric of every split), how it was evaluated,
    the notes, and nanoGPT's OpenWebText figures when `references` (GPT-2 BPE data)."""
    columns = [(f"{split}_{m.name}", f"{split} {m.title}") for m in METRICS for split in SPLITS]
    lines = ["# LMEvaluator report", "",
             f"**Decision: {'BLESSED' if blessed else 'NOT BLESSED'}** — {reason}.", "",
             f"| model | role | {' | '.join(title for _, title in columns)} | params | tokens | source |",
             f"| --- | --- | {' | '.join('---:' for _ in columns)} | ---: | --- | --- |"]
    for r in results:
        params = "—" if r.num_params is None else _count(r.num_params)
        cells = [_loss(r.values.get(key)) for key, _ in columns]
        if r.skipped is not None:
            cells[-1] = f"skipped: {r.skipped}"
        lines.append(f"| {r.name} | {ROLE_TITLES[r.role]} | {' | '.join(cells)} | {params} | {r.tokens or '—'} | "
                     f"`{r.source}` |")
    lines += ["", "## Evaluation", "", f"- the data's tokens: {data}"]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    lines += [f"- {m.title}: {m.unit}" for m in METRICS]
    lines += ["- every model that reads the data's tokens sees the same windows; a GPT-2 baseline beside data of "
              "other tokens reads the same val text in its own"]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    if references:
        lines += ["", "## Reference", "",
                  "The released GPT-2 checkpoints' val loss on OpenWebText (nanoGPT's README), comparable "
                  "only on OpenWebText with GPT-2's tokenizer and a 1024-token context:", "",
                  "| model | OpenWebText val loss |", "| --- | ---: |"]
        lines += [f"| {name} | {loss:.2f} |" for name, loss in references.items()]
    return "\n".join(lines) + "\n"


def plot_loss_curves(path: str, history: Optional[dict], results: List[ModelResult]) -> None:
    """Training loss and the run's train/val evaluations against iterations, the candidate's,
    last blessed model's and baselines' val losses as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=100)
    axes = figure.add_subplot()
    if history and history.get("train"):
        steps, losses = zip(*[(row[0], row[1]) for row in history["train"]])
        axes.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=1, label="train loss (batch)")
    if history and history.get("eval"):
        steps, train, val = zip(*[(row[0], row[1], row[2]) for row in history["eval"]])
        axes.plot(steps, train, "o-", color="tab:blue", markersize=3, label="train loss (eval)")
        axes.plot(steps, val, "o-", color="tab:orange", markersize=3, label="val loss (eval)")
    if not history:
        axes.set_title("no training history (history.json) for this model", fontsize=9)
    styles = {"candidate": ("tab:orange", ":"), "last_blessed": ("tab:green", "--"), "unigram": ("tab:gray", "-.")}
    baseline_colors = iter(BASELINE_COLORS * len(results))
    for r in results:
        if r.val_loss is None or r.tokens != results[0].tokens:  # a loss per token of other tokens: not here
            continue
        color, linestyle = styles.get(r.role) or (next(baseline_colors), "-.")
        axes.axhline(r.val_loss, color=color, linestyle=linestyle, linewidth=1.2,
                     label=f"{r.name} val {r.val_loss:.3f} ({ROLE_TITLES[r.role]}, this evaluation)")
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss (nats per token)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    files.write_file(path, png.getvalue())
