"""AdamW with decoupled weight decay on the decay group only, and dynamic loss scaling for
float16. Written out (rather than a Keras optimizer) so that its state is plain variables in the
training checkpoint and its update is exactly torch's AdamW. (nanoGPT's learning-rate schedule is
training/schedule.py.)"""

from __future__ import annotations

from typing import List, Optional, Sequence

import tensorflow as tf


class AdamW(tf.Module):
    """torch.optim.AdamW's update. Create it under the distribution strategy's scope so that its
    moment variables are mirrored like the parameters."""

    def __init__(self, decay: Sequence[tf.Variable], no_decay: Sequence[tf.Variable], *,
                 weight_decay: float, beta1: float = 0.9, beta2: float = 0.95, eps: float = 1e-8):
        super().__init__(name="adamw")
        self.params: List[tf.Variable] = list(decay) + list(no_decay)
        self.decays = [weight_decay] * len(decay) + [0.0] * len(no_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.m = [tf.Variable(tf.zeros_like(p), trainable=False, name="m") for p in self.params]
        self.v = [tf.Variable(tf.zeros_like(p), trainable=False, name="v") for p in self.params]

    def apply(self, grads: Sequence[tf.Tensor], lr: tf.Tensor, finite: Optional[tf.Tensor] = None) -> None:
        """Apply one update from gradients that every replica holds identically (already
        all-reduced). Works in a replica context of any tf.distribute strategy. With `finite`
        (float16 loss scaling), a False leaves parameters and state unchanged."""
        step = tf.cast(self.step + 1, tf.float32)
        bias_correction1 = 1.0 - tf.pow(self.beta1, step)
        bias_correction2 = 1.0 - tf.pow(self.beta2, step)
        step_size = lr / bias_correction1

        def fused_update(param, grad, m, v, weight_decay):
            # One fused kernel for m, v and the parameter: TF's Adam is torch's with
            # epsilon scaled by sqrt(bias_correction2), which is passed so.
            if weight_decay:
                param.assign(param * (1.0 - lr * weight_decay))  # decoupled weight decay
            return tf.raw_ops.ResourceApplyAdam(
                var=param.handle, m=m.handle, v=v.handle, beta1_power=1.0 - bias_correction1,
                beta2_power=1.0 - bias_correction2, lr=lr, beta1=self.beta1, beta2=self.beta2,
                epsilon=self.eps * tf.sqrt(bias_correction2), grad=grad)

        def guarded_update(param, grad, m, v, weight_decay):
            # The same update, kept only where `finite` holds (float16 overflow skips the step).
            new_m = self.beta1 * m + (1.0 - self.beta1) * grad
            new_v = self.beta2 * v + (1.0 - self.beta2) * tf.square(grad)
            new_param = param * (1.0 - lr * weight_decay) if weight_decay else param
            new_param = new_param - step_size * new_m / (tf.sqrt(new_v) / tf.sqrt(bias_correction2) + self.eps)
            m.assign(tf.where(finite, new_m, m))
            v.assign(tf.where(finite, new_v, v))
            return param.assign(tf.where(finite, new_param, param))

        update = fused_update if finite is None else guarded_update

        def apply_everywhere(strategy, grads):
            for param, grad, m, v, wd in zip(self.params, grads, self.m, self.v, self.decays):
                strategy.extended.update(param, update, args=(grad, m, v, wd), group=False)
            increment = tf.constant(1, tf.int64) if finite is None else tf.cast(finite, tf.int64)
            strategy.extended.update(self.step, lambda s: s.assign_add(increment), group=False)

        tf.distribute.get_replica_context().merge_call(apply_everywhere, args=(list(grads),))


class DynamicLossScale(tf.Module):
    """float16's dynamic loss scale: halve on overflow (and skip that step), double after
    `growth_interval` finite steps in a row."""

    def __init__(self, initial: float = 2.0 ** 15, growth_interval: int = 2000):  # (torch's GradScaler: 2 ** 16)
        super().__init__(name="loss_scale")
        self.scale = tf.Variable(initial, dtype=tf.float32, trainable=False,
                                 aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False,  # in a row: training/divergence.py
                                         aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.growth_interval = growth_interval

    def update(self, finite: tf.Tensor) -> None:
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_interval)
        self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale), self.scale / 2.0))
        self.good_steps.assign(tf.where(tf.logical_and(finite, tf.logical_not(grow)), self.good_steps + 1,
                                        tf.zeros_like(self.good_steps)))
        self.skipped_steps.assign(tf.where(finite, tf.zeros_like(self.skipped_steps), self.skipped_steps + 1))
