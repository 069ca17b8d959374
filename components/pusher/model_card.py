"""The model card the Pusher writes beside every pushed model: `assets.extra/model_card.md` in the
version directory (TF Serving ignores assets.extra/), from what the pipeline recorded: the
evaluation's metrics.json (the data, the tokenizer, the model's shape and size, the training
settings, every model's loss and bits per byte, the ids of the artifacts it read), the blessings and
the push. Plain text in, plain text out: nothing here reads TensorFlow or ML Metadata."""

from __future__ import annotations

import time
from typing import List, Optional

from components.lm_evaluator.report import ROLE_TITLES
from core.shards import SPLITS

# The training settings the card lists (the run's train_config.json has them all).
TRAINING_SHOWN = ("init_from", "max_iters", "batch_size", "gradient_accumulation_steps", "block_size",
                  "learning_rate", "min_lr", "warmup_iters", "lr_decay_iters", "weight_decay", "dropout", "dtype",
                  "seed", "rng")
# TokenizeText's counts that the card shows as the data's statistics, besides documents and tokens.
DATA_STATISTICS = ("num_skipped_documents", "invalid_utf8_documents", "bom_dropped_documents",
                   "crlf_normalized_lines")


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "—" if value is None else str(value)


def _data(metrics: dict) -> List[str]:
    data = metrics.get("data", {})
    found = data.get("properties")
    lines = ["## Data", ""]
    if not found:
        return lines + ["- the tokenization's counts were not recorded (examples without TokenizeText's properties)",
                        ""]
    lines += [f"- source: `{found.get('source', '—')}`",
              f"- documents: {_value(found.get('num_documents'))} ({_value(found.get('num_documents_train'))} in "
              f"train, {_value(found.get('num_documents_val'))} in val)",
              f"- tokens: {_value(found.get('num_tokens_train'))} train, {_value(found.get('num_tokens_val'))} val",
              f"- split: {found.get('split_method', '—')}, val_fraction {found.get('val_fraction', '—')}, seed "
              f"{found.get('split_seed', '—')}",
              "- statistics (TokenizeText's counts): " + ", ".join(f"{key} {_value(found[key])}"
                                                                   for key in DATA_STATISTICS if key in found)]
    return lines + [""]


def _model(metrics: dict, serving: Optional[str]) -> List[str]:
    config = metrics.get("model", {}).get("config") or {}
    candidate = next((m for m in metrics.get("models", []) if m["role"] == "candidate"), {})
    shape = ", ".join(f"{key} {config[key]}" for key in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size",
                                                         "bias") if key in config)
    params = candidate.get("num_params")
    return ["## Model", "", "- a GPT (nanoGPT's, with GPT-2's variable names): " + (shape or "shape not recorded"),
            f"- parameters: {params:,} (without the position embeddings, as nanoGPT counts them)" if params
            else "- parameters: not recorded",
            f"- served with {serving or 'what its export chose (not recorded)'}", ""]


def _training(metrics: dict) -> List[str]:
    training = metrics.get("training") or {}
    config = training.get("config") or {}
    lines = ["## Training", ""]
    if not config:
        return lines + ["- the training run's settings were not recorded", ""]
    lines.append("- " + ", ".join(f"{key} {config[key]}" for key in TRAINING_SHOWN if key in config))
    result = training.get("result") or {}
    if result:
        lines.append("- result: " + ", ".join(f"{key} {_value(value)}" for key, value in sorted(result.items())))
    return lines + ["- every setting: train_config.json in the training run (ModelRun below)", ""]


def _evaluation(metrics: dict, infra_check: Optional[str]) -> List[str]:
    columns = [f"{split}_{metric}" for metric in ("loss", "bpb") for split in SPLITS]
    lines = ["## Evaluation", "",
             "Loss: nats per token; bpb: bits per UTF-8 byte of the same text (compares models of different "
             "tokens).", "",
             f"| model | role | tokens | {' | '.join(c.replace('_', ' ') for c in columns)} |",
             f"| --- | --- | --- | {' | '.join('---:' for _ in columns)} |"]
    for m in metrics.get("models", []):
        cells = [_value(m.get(c)) for c in columns]
        if m.get("skipped"):
            cells[-1] = f"skipped: {m['skipped']}"
        lines.append(f"| {m['name']} | {ROLE_TITLES.get(m['role'], m['role'])} | {m.get('tokens') or '—'} | "
                     f"{' | '.join(cells)} |")
    evaluation = metrics.get("evaluation", {})
    lines += ["", f"- windows of {evaluation.get('block_size', '—')} tokens ({evaluation.get('mode', '—')}): "
                  f"{_value(evaluation.get('windows_val'))} in the val split",
              f"- decision: {metrics.get('reason', '—')}",
              f"- infra check: {infra_check or 'none recorded'}", ""]
    return lines


def _lineage(metrics: dict, ids: List[tuple]) -> List[str]:
    lines = ["## Lineage", "", "| artifact | type | id | uri |", "| --- | --- | ---: | --- |"]
    for key, found in (metrics.get("inputs") or {}).items():
        lines.append(f"| {key} | {found['type']} | {found['id']} | `{found['uri']}` |")
    lines += [f"| {key} | {kind} | {artifact_id} | `{uri}` |" for key, kind, artifact_id, uri in ids]
    model = (metrics.get("inputs") or {}).get("model")
    if model:
        lines += ["", f"`python runner.py lineage --model={model['id']}` shows the whole chain from ML Metadata."]
    return lines + [""]


def _use(metrics: dict) -> List[str]:
    data = (metrics.get("data") or {})
    tokens = (data.get("properties") or {}).get("num_tokens_train")
    config = (metrics.get("model") or {}).get("config") or {}
    return ["## Intended use and limits", "",
            "- Intended use: continuing text in the manner of its training data, for study and experiment "
            "(nanoGPT's purpose); served by the SavedModel's signatures generate_text (character models), "
            "generate, logits and tokenizer.",
            f"- It learnt from {_value(tokens) if tokens is not None else 'an unrecorded number of'} tokens of one "
            f"corpus and knows nothing else: it makes up text, may repeat its training text, and has no instruction "
            f"or safety tuning. Do not take what it writes as fact or use it to decide about people.",
            f"- It sees {config.get('block_size', 'a fixed number of')} tokens of context, and reads only its "
            f"tokenizer's tokens (a character model: a prompt of its vocabulary's characters).",
            "- Its figures above are measured on the val split of the same corpus; they say nothing of other text.",
            ""]


def model_card(metrics: Optional[dict], *, version: str, destination: str, ids: List[tuple],
               infra_check: Optional[str], serving: Optional[str] = None) -> str:
    """The card's Markdown. metrics: the evaluation's metrics.json (None: not recorded); ids: (key,
    type, id, uri) of the artifacts the Pusher read (the model, its blessings); serving: what the
    export chose (serving/choose.py describe)."""
    metrics = metrics or {}
    lines = [f"# Model card: version {version}", "",
             f"Pushed {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} to `{destination}` by nanogpt-tfx's "
             f"Pusher, from what the pipeline recorded.", ""]
    if not metrics:
        lines += ["No evaluation was recorded for this model (its blessing names no LMEvaluator evaluation).", ""]
    tokenizer = ["## Tokenizer", "", f"- {metrics.get('data', {}).get('tokenizer', 'not recorded')}; the SavedModel's "
                                     f"`tokenizer` signature describes it", ""]
    lines += _data(metrics) + tokenizer + _model(metrics, serving) + _training(metrics)
    lines += _evaluation(metrics, infra_check)
    lines += _lineage(metrics, ids) + _use(metrics)
    return "\n".join(lines)
