"""Bits per byte: the cross-entropy in bits per UTF-8 byte of the text the windows' target tokens
decode to. It compares models of different tokenizers on the same text (a character model, a BPE
model, GPT-2): a model's nats over its targets, divided by ln 2 and by the bytes those targets stand
for (components/lm_evaluator/tokens.py: a character its UTF-8 bytes, a GPT-2 token the bytes it
decodes to, the end-of-text token none). For characters of ASCII text, one byte each, it is the
loss / ln 2."""

import math

from components.lm_evaluator.metrics.base import Metric


def bits_per_byte(score, windows) -> float:
    return score.nats / math.log(2) / windows.target_bytes if windows.target_bytes else float("nan")


BPB = Metric(name="bpb", title="bpb", unit="bits per UTF-8 byte of the text the target tokens decode to (loss / "
                                          "ln 2 x tokens / bytes; an end-of-text token counts no byte)",
             of=bits_per_byte)
