"""Running out of memory, said in one line: where, and the settings that size a training step.

Two ways a training runs out: TensorFlow cannot allocate a tensor (ResourceExhaustedError, with a
traceback of the graph's nodes that tells a nanoGPT user nothing), or the kernel's out-of-memory
killer ends the training process (SIGKILL: a machine's memory, or a pod's or container's limit, is
used up). Both become OutOfMemory, whose line names what sizes the step: a micro-batch of
batch_size x block_size tokens, whose every layer holds batch_size x n_head x block_size^2 attention
scores, and what lowers it, as nanoGPT's users lower batch_size on a GPU that is too small.
No TensorFlow here: the parent of a training process (training/train_process.py) imports none.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Tuple

from core.errors import OutOfMemory

_ALLOCATION = re.compile(r"OOM when allocating tensor with shape\s*\[[^\]]*\] and type \w+"
                         r"|Out of memory while trying to allocate \d+ bytes")  # TensorFlow's, XLA's
_DEVICE = re.compile(r"device:([A-Z_]+:\d+)")
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ADVICE = ("lower --batch_size (a larger --gradient_accumulation_steps keeps the tokens per iteration) or "
          "--block_size, or train a smaller model")


def kept_for_backward(n_layer: int, n_head: int, block_size: int, batch_size: int, dtype: str) -> Tuple[int, str]:
    """(bytes, in words) of the attention probabilities a training step keeps for its backward pass:
    n_layer x batch_size x n_head x block_size^2 (the model materializes them: no flash attention)."""
    count = n_layer * batch_size * n_head * block_size ** 2
    size = count * _BYTES.get(dtype, 4)
    return size, (f"the attention probabilities a step keeps for its backward pass, n_layer x batch_size x n_head x "
                  f"block_size^2 = {n_layer} x {batch_size} x {n_head} x {block_size:,}^2 = {count:,} "
                  f"({_gigabytes(size)} in {dtype})")


def ran_out(error) -> str:
    """"out of memory on CPU:0 (OOM when allocating tensor with shape[...] and type float)": where
    TensorFlow's (or XLA's) ResourceExhaustedError ran out, as much as its message says."""
    message = getattr(error, "message", str(error))
    allocation = _ALLOCATION.search(message)
    device = _DEVICE.search(message)
    return (f"out of memory{' on ' + device.group(1) if device else ''}"
            f"{' (' + ' '.join(allocation.group(0).split()) + ')' if allocation else ''}")


def resource_exhausted(error, model_config, cfg, iteration: int) -> OutOfMemory:
    """TensorFlow's ResourceExhaustedError at `iteration` of a training as one line."""
    _, kept = kept_for_backward(model_config.n_layer, model_config.n_head, model_config.block_size, cfg.batch_size,
                                cfg.dtype)
    return OutOfMemory(f"{ran_out(error)} at iteration {iteration} with --batch_size={cfg.batch_size} and "
                       f"--block_size={model_config.block_size}: {kept}, besides the rest; {ADVICE}")


def check_fits(n_layer: int, n_head: int, block_size: int, batch_size: int, dtype: str) -> None:
    """OutOfMemory, before anything is built, when a training step on this machine's CPU cannot fit:
    what it keeps for its backward pass (kept_for_backward) is alone more than the memory
    (machine_memory). A lower bound, so never a refusal of a step that would fit; a step above it may
    still run out (resource_exhausted, or the kernel's out-of-memory killer)."""
    memory = machine_memory()
    size, kept = kept_for_backward(n_layer, n_head, block_size, batch_size, dtype)
    if memory and size > memory:
        raise OutOfMemory(f"--block_size={block_size} with --batch_size={batch_size} cannot train on this machine: "
                          f"{kept}, are alone more than its memory ({_gigabytes(memory)}); {ADVICE}")


def machine_memory() -> Optional[int]:
    """This machine's memory in bytes, or this process's container limit when lower (its memory
    cgroup's, v1 or v2); None where neither can be read."""
    try:
        sizes = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    except (ValueError, OSError, AttributeError):
        sizes = []
    for limit in _cgroup_limit_files():
        try:
            with open(limit) as f:
                sizes.append(int(f.read().strip()))  # "max" (no limit): ValueError
        except (OSError, ValueError):
            pass
    return min(sizes) if sizes else None


def _cgroup_limit_files():
    """The memory limit files of this process's cgroups (/proc/self/cgroup: "ID:CONTROLLERS:PATH")."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        ident, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if "memory" in controllers.split(","):  # v1
            found.append(f"/sys/fs/cgroup/memory{path.rstrip('/')}/memory.limit_in_bytes")
        elif ident == "0" and not controllers:  # v2: the unified hierarchy, alone or beside v1's
            found += [f"{root}{path.rstrip('/')}/memory.max" for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")]
    return found


def killed_for_memory(process: str, cfg) -> OutOfMemory:
    """A process the kernel's out-of-memory killer ended while it ran cfg (a TrainConfig), as one line."""
    memory = machine_memory()
    return OutOfMemory(
        f"{process} was killed by the kernel's out-of-memory killer (SIGKILL, and /proc/vmstat's oom_kill count rose "
        f"while it ran): with --batch_size={cfg.batch_size} and --block_size={cfg.block_size} it needed more than "
        f"the memory of this machine or its container{f' ({_gigabytes(memory)})' if memory else ''}; {ADVICE}")


def oom_kills() -> Optional[int]:
    """How many processes the kernel's out-of-memory killer has ended since boot (Linux's
    /proc/vmstat oom_kill, a container's limit included); None where it is not kept."""
    try:
        with open("/proc/vmstat") as vmstat:
            for line in vmstat:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:,.1f} GB" if size >= 1e9 else f"{size / 1e6:,.1f} MB"
