"""What LMEvaluator computes, without TFX: evaluation windows, every metric of a model on them
(metrics/), the unigram baseline, and the blessing decision.

Windows are built once per split and fed, unchanged, to every model that reads the data's tokens
(candidate, last blessed model, the unigram baseline, baselines of the same vocabulary), so the
losses compare like with like. A GPT-2 baseline beside data of other tokens (characters) reads the
same val text in its own tokens: the split's text encoded with GPT-2 BPE, windowed the same way;
its bits per byte compare with the others', its loss per token does not.

The val split takes eval_batches, the train split eval_train_batches (nanoGPT estimates both on a
sample; the val split, which gates the blessing, is read whole by default):
- eval_batches > 0: eval_batches batches of batch_size windows at random offsets, drawn the way
  training draws them (training.data.sample_windows, stateless seed (seed, 2 * batch + split_index));
- eval_batches == 0: the whole split as consecutive non-overlapping windows at offsets 0, T, 2T, ...
  (T = the evaluation block size) while a window and its target shifted by one fit; the tail shorter
  than T + 1 tokens is left out. Every window holds T targets, so the loss is the mean over all the
  split's evaluated target tokens.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from components import artifact_layout
from components.lm_evaluator.metrics import METRICS, SplitScore
from components.lm_evaluator.tokens import target_bytes
from core.errors import MissingFile, UsageError, UserError
from core.shards import SPLITS, TRAIN, VAL

# nanoGPT's README: the released GPT-2 checkpoints' loss on OpenWebText's validation split.
REFERENCE_VAL_LOSSES = {"gpt2": 3.12, "gpt2-medium": 2.84, "gpt2-large": 2.67, "gpt2-xl": 2.54}
SMALL_BATCH_LOGITS_BYTES = 64 << 20  # up to this, two evaluation batches run at once (batches_in_flight)


@dataclasses.dataclass
class SplitWindows:
    """The (x, y) batches of one split, int32 numpy arrays of shape (<= batch_size, block_size)."""
    split: str
    num_tokens: int  # tokens in the split
    max_token: int  # the largest token id in the split
    batches: List[Tuple[np.ndarray, np.ndarray]]
    target_bytes: int  # the UTF-8 bytes the batches' target tokens stand for (metrics/bpb.py)

    @property
    def num_windows(self) -> int:
        return sum(len(x) for x, _ in self.batches)


@dataclasses.dataclass
class ModelResult:
    role: str  # "candidate", "last_blessed" or "baseline"
    name: str  # label in the report and in property names
    source: str  # the directory or GPT-2 name it was loaded from
    values: Dict[str, float] = dataclasses.field(default_factory=dict)  # "<split>_<metric>": each metric's value
    tokens: str = ""  # the tokens it read: the data's, or GPT-2 BPE of the same text
    num_params: Optional[int] = None
    vocab_size: Optional[int] = None
    skipped: Optional[str] = None  # why it was not evaluated

    @property
    def train_loss(self) -> Optional[float]:
        return self.values.get(f"{TRAIN}_loss")

    @property
    def val_loss(self) -> Optional[float]:
        return self.values.get(f"{VAL}_loss")

    def to_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        return {**{k: v for k, v in fields.items() if k != "values"}, **fields["values"]}


def split_windows(tokens: np.ndarray, split: str, *, token_bytes: np.ndarray, block_size: int, batch_size: int,
                  eval_batches: int, seed: int, split_index: int) -> SplitWindows:
    """The evaluation batches of one split's token stream (see the module docstring)."""
    from training.data import TokenStream, check_length, largest_token_id

    n = len(tokens)
    check_length(n, block_size, split)
    if eval_batches > 0:
        stream = TokenStream(tokens, block_size, split)
        batches = []
        for k in range(eval_batches):
            x, y = stream.eval_batch((seed, 2 * k + split_index), batch_size)
            batches.append((x.numpy(), y.numpy()))
    else:
        count = (n - 1) // block_size
        index = np.arange(count)[:, None] * block_size + np.arange(block_size + 1)[None, :]
        windows = tokens[index].astype(np.int32)
        batches = [(windows[i:i + batch_size, :-1], windows[i:i + batch_size, 1:])
                   for i in range(0, count, batch_size)]
    return SplitWindows(split=split, num_tokens=n, max_token=largest_token_id(tokens), batches=batches,
                        target_bytes=sum(target_bytes(token_bytes, y) for _, y in batches))


def load_streams(examples_uri: str) -> Dict[str, np.ndarray]:
    """{split: token stream} of the train and val splits of an Examples artifact (core.shards)."""
    from training.data import load_split

    return {split: load_split(examples_uri, split) for split in SPLITS}


def make_windows(streams: Dict[str, np.ndarray], train_batches: Optional[int] = None, **kwargs
                 ) -> Dict[str, SplitWindows]:
    """{split: SplitWindows} of token streams (split_windows' settings as keywords; train_batches, when
    given, the train split's eval_batches); a split keeps its index in SPLITS, so that random windows
    draw the same offsets whichever splits are given."""
    def batches(split):
        return {"eval_batches": train_batches} if split == TRAIN and train_batches is not None else {}

    return {split: split_windows(tokens, split, split_index=SPLITS.index(split), **{**kwargs, **batches(split)})
            for split, tokens in streams.items()}


def load_windows(examples_uri: str, **kwargs) -> Dict[str, SplitWindows]:
    """{split: SplitWindows} for the train and val splits of an Examples artifact (core.shards)."""
    return make_windows(load_streams(examples_uri), **kwargs)


def loss_function(model, block_size: int):
    """The mean cross-entropy of one (x, y) batch, in a tf.function traced for windows of block_size
    (once for full batches, once more for a smaller last batch)."""
    import tensorflow as tf

    from model.model import cross_entropy

    @tf.function(input_signature=[tf.TensorSpec([None, block_size], tf.int32)] * 2, autograph=False)
    def batch_loss(x, y):
        return cross_entropy(tf.cast(model(x, training=False), tf.float32), y, differentiated=False)

    return batch_loss


def batches_in_flight(batch_logits: int) -> int:
    """How many evaluation batches run at once, for a batch whose logits hold batch_logits numbers:
    two where they are small, since a small model's batch leaves the cores idle between its ops (the
    executor's gaps, ops too small to split across threads), which a second batch fills (the default
    character model's whole evaluation 1.4x faster on 2 cores); one where the logits are large, whose
    ops keep every core busy by themselves and whose memory a second batch would double."""
    return 2 if batch_logits * 4 <= SMALL_BATCH_LOGITS_BYTES else 1


class ScoringPace:
    """The lines said while a model is scored for long (a large model on a whole val split: hours):
    after `first_s`, then every `every_s`, the batches done and the time left at this pace."""

    def __init__(self, what: str, batches: int, log, first_s: float = 60.0, every_s: float = 600.0,
                 clock=time.monotonic):
        self.what, self.batches, self.log = what, batches, log
        self.first_s, self.every_s, self.clock = first_s, every_s, clock
        self.done, self.started = 0, clock()
        self.next_s = first_s

    def batch_done(self) -> None:
        self.done += 1
        seconds = self.clock() - self.started
        if seconds < self.next_s or self.done == self.batches:
            return
        self.next_s = seconds + self.every_s
        left = seconds / self.done * (self.batches - self.done)
        self.log(f"{self.what}: {self.done:,} of {self.batches:,} batches scored in {_minutes(seconds)}, "
                 f"about {_minutes(left)} left at this pace")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def score(batch_loss, windows: SplitWindows, vocab_size: int, pace: Optional[ScoringPace] = None) -> SplitScore:
    """A model's cross-entropy summed over every target token of the windows, batch by batch (the
    same sum, in the same order, however many batches run at once); pace is told of each batch."""
    x, _ = windows.batches[0]
    losses = []
    with concurrent.futures.ThreadPoolExecutor(batches_in_flight(x.size * vocab_size)) as pool:
        for loss in pool.map(lambda batch: float(batch_loss(*batch)), windows.batches):
            losses.append(loss)
            if pace:
                pace.batch_done()
    total, count = 0.0, 0
    for loss, (_, y) in zip(losses, windows.batches):
        total += loss * y.size
        count += y.size
    return SplitScore(nats=total, tokens=count)


def candidate_checkpoint(model_uri: str) -> str:
    """The Hugging Face checkpoint directory inside a Model artifact."""
    import tensorflow as tf

    directory = os.path.join(model_uri, artifact_layout.HF_CHECKPOINT_DIR)
    if not tf.io.gfile.isdir(directory):
        raise FileNotFoundError(f"Model artifact {model_uri} has no {artifact_layout.HF_CHECKPOINT_DIR}/ "
                                f"checkpoint (see components/artifact_layout.py)")
    return directory


def load_for_eval(source: str, block_size: Optional[int], what: str):
    """GPT.from_pretrained(source), its context cropped to block_size; errors name `what`."""
    from model.model import GPT

    try:
        model = GPT.from_pretrained(source, **({"block_size": block_size} if block_size else {}))
    except (OSError, ValueError) as e:
        kind = next(kind for kind, error in ((MissingFile, FileNotFoundError), (UsageError, ValueError),
                                             (UserError, OSError)) if isinstance(e, error))
        raise kind(f"LMEvaluator cannot load {what} from {source!r}: {e}") from e
    if block_size and model.config.block_size < block_size:
        raise UsageError(f"LMEvaluator: {what} ({source!r}) has a context of {model.config.block_size} "
                         f"tokens, shorter than the evaluation block_size {block_size}")
    return model


def vocab_problem(vocab_size: int, windows: Dict[str, SplitWindows]) -> Optional[str]:
    """Why a model with this vocabulary cannot read the data, or None."""
    max_token = max(w.max_token for w in windows.values())
    if max_token >= vocab_size:
        return (f"its vocabulary ({vocab_size} tokens) does not cover the data's token ids "
                f"(up to {max_token}): the data was tokenized differently")
    return None


def evaluate(model, windows: Dict[str, SplitWindows], result: ModelResult, log=None) -> ModelResult:
    """Every metric of the model on every split of `windows`, into result.values; log, when given, is
    told how it goes when that takes long (ScoringPace)."""
    result.num_params = model.get_num_params()
    result.vocab_size = model.config.vocab_size
    batch_loss = loss_function(model, windows[VAL].batches[0][0].shape[1])
    pace = ScoringPace(f"{result.name} ({result.source})", sum(len(w.batches) for w in windows.values()), log) \
        if log else None
    for split in windows:
        record(result, split, score(batch_loss, windows[split], model.config.vocab_size, pace), windows[split])
    return result


def record(result: ModelResult, split: str, split_score: SplitScore, windows: SplitWindows) -> None:
    """Every metric of one split's score, into result.values."""
    for metric in METRICS:
        result.values[f"{split}_{metric.name}"] = metric.of(split_score, windows)


# The unigram baseline counts at most this many train tokens: a larger split (OpenWebText's 9B) in
# UNIGRAM_CHUNKS evenly spaced runs, a sample whose frequencies differ from the whole's by far less
# than any model's margin over them.
UNIGRAM_MAX_TOKENS, UNIGRAM_CHUNKS = 1 << 27, 64


def train_counts(train: np.ndarray, vocab_size: int) -> np.ndarray:
    """How often each id occurs in the train split (or in UNIGRAM_MAX_TOKENS of it), read in chunks
    (a split may be a memory map larger than memory)."""
    n = len(train)
    step = n // UNIGRAM_CHUNKS
    runs = [(0, n)] if n <= UNIGRAM_MAX_TOKENS else \
        [(k * step, k * step + UNIGRAM_MAX_TOKENS // UNIGRAM_CHUNKS) for k in range(UNIGRAM_CHUNKS)]
    counts = np.zeros(vocab_size, np.int64)
    for start, end in runs:
        for at in range(start, end, 1 << 24):
            counts += np.bincount(train[at:min(end, at + (1 << 24))], minlength=vocab_size)[:vocab_size]
    return counts


def unigram(streams: Dict[str, np.ndarray], windows: Dict[str, SplitWindows], vocab_size: int,
            tokens: str) -> ModelResult:
    """The trivial model of the data: every token predicted by its frequency in the train split,
    with one added count for each id of the vocabulary (Laplace), so that a token the train split
    lacks costs a finite loss. A candidate that does not beat it has learnt nothing of the order of
    the tokens."""
    counts = train_counts(streams[TRAIN], vocab_size) + 1.0
    log_p = np.log(counts / counts.sum())
    result = ModelResult("unigram", "unigram", "each token's train-split frequency (add-one)", num_params=vocab_size,
                         vocab_size=vocab_size, tokens=tokens)
    for split in windows:
        batches = windows[split].batches
        nats = -sum(float(log_p[y].sum()) for _, y in batches)
        record(result, split, SplitScore(nats=nats, tokens=sum(y.size for _, y in batches)), windows[split])
    return result


def baseline_label(source: str) -> str:
    """A short name for a baseline: the GPT-2 name, or the checkpoint directory's name (its parent's
    when it is a Model artifact's Format-HF)."""
    path = os.path.normpath(source)
    name = os.path.basename(path)
    if name == artifact_layout.HF_CHECKPOINT_DIR:
        name = os.path.basename(os.path.dirname(path))
    return name or source


def property_name(label: str) -> str:
    """A label as it can appear inside an ML Metadata property name."""
    return re.sub(r"[^0-9A-Za-z]+", "_", label).strip("_").lower() or "model"


def unique_labels(sources: Sequence[str]) -> List[str]:
    """baseline_label of each source, made unique with _2, _3, ... (two dirs named alike)."""
    labels, seen = [], {}
    for source in sources:
        label = baseline_label(source)
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label}_{seen[label]}")
    return labels


@dataclasses.dataclass
class Bar:
    """A model whose val bits per byte the candidate must not fall behind: by more than `margin`
    (within it: blessed), or, when `beat`, at all (strictly better). `bpb` None: it was not
    evaluated, for the reason `missing`, and the candidate is not blessed."""
    name: str
    bpb: Optional[float]
    margin: float = 0.0
    beat: bool = False
    missing: Optional[str] = None

    def judge(self, ours: float) -> Tuple[bool, str]:
        if self.bpb is None:
            return False, f"{self.name} was not evaluated ({self.missing})"
        if self.beat:
            if ours < self.bpb:
                return True, f"val bpb {ours:.4f} < {self.name}'s {self.bpb:.4f}"
            return False, f"val bpb {ours:.4f} is no better than {self.name}'s {self.bpb:.4f}"
        if ours <= self.bpb + self.margin:
            return True, f"val bpb {ours:.4f} <= {self.name}'s {self.bpb:.4f} + {self.margin:g}"
        return False, f"val bpb {ours:.4f} is worse than {self.name}'s {self.bpb:.4f} by more than {self.margin:g}"


def decide(candidate: Dict[str, float], *, threshold: Optional[float], last_blessed: Optional[Dict[str, float]],
           max_regression: float, candidate_is_last_blessed: bool = False,
           bars: Sequence[Bar] = (), uncompared: Optional[str] = None) -> Tuple[bool, str]:
    """(blessed, why) from the candidate's and the last blessed model's values (ModelResult.values):
    bless when the candidate's val loss is finite, below the threshold (when there is one), on
    every gating metric (METRICS) at most max_regression above the last blessed model's (when there
    is one), and its val bits per byte pass every bar (the unigram baseline, a gating baseline). A
    candidate that is the last blessed model itself (a rerun whose Trainer came from the cache) was
    blessed and pushed already: it is not blessed again, so that nothing is pushed twice.
    uncompared: why the last blessed model, when there is one, has no values (last_blessed None)."""
    if candidate_is_last_blessed:
        return False, "the candidate is the last blessed model itself, already blessed and pushed"
    candidate_val = candidate[f"{VAL}_loss"]
    if not math.isfinite(candidate_val):
        return False, f"the candidate's val loss is {candidate_val}"
    failures, passes = [], []
    if threshold is not None:
        if candidate_val < threshold:
            passes.append(f"val loss {candidate_val:.4f} < val_loss_threshold {threshold:g}")
        else:
            failures.append(f"val loss {candidate_val:.4f} is not below val_loss_threshold {threshold:g}")
    if last_blessed is None:
        passes.append(f"the last blessed model not compared: {uncompared}" if uncompared
                      else "no previously blessed model to compare with")
    for metric in (m for m in METRICS if m.gates and last_blessed is not None):
        ours, theirs = candidate[f"{VAL}_{metric.name}"], last_blessed[f"{VAL}_{metric.name}"]
        if ours <= theirs + max_regression:
            passes.append(f"val {metric.title} {ours:.4f} <= last blessed {theirs:.4f} + max_regression "
                          f"{max_regression:g}")
        else:
            failures.append(f"val {metric.title} {ours:.4f} is worse than the last blessed model's {theirs:.4f} "
                            f"by {ours - theirs:.4f}, more than max_regression {max_regression:g}")
    for bar in bars:
        passed, why = bar.judge(candidate[f"{VAL}_bpb"])
        (passes if passed else failures).append(why)
    if failures:
        return False, "not blessed: " + "; ".join(failures)
    return True, "blessed: " + "; ".join(passes)
