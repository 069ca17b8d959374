"""TFX's Pusher with an atomic push (components/pusher/executor.py); the same spec, inputs and
outputs, and the same name in ML Metadata and in compiled specs."""

from tfx.components.pusher import component
from tfx.dsl.components.base import executor_spec

from components.pusher import executor


class Pusher(component.Pusher):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
