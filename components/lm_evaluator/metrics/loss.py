"""The mean cross-entropy per target token, nanoGPT's `loss`: what training minimizes."""

from components.lm_evaluator.metrics.base import Metric

LOSS = Metric(name="loss", title="loss", unit="mean cross-entropy (nats per token) over every target token of the "
                                               "windows", of=lambda score, windows: score.nats / score.tokens,
              gates=True)
