"""Running out of memory, said in one line: where, and the settings that size a training step.

Two ways a training runs out: TensorFlow cannot allocate a tensor (ResourceExhaustedError, with a
traceback of the graph's nodes that tells a nanoGPT user nothing), or the kernel's out-of-memory
killer ends the training process (SIGKILL: a machine's memory, or a pod's or container's limit, is
used up). Both become OutOfMemory, whose line names what sizes the step, a micro-batch of
batch_size x block_size tokens whose every layer's attention holds batch_size x n_head x
block_size^2 probabilities, and what lowers it, as nanoGPT's users lower batch_size on a GPU that is
too small. A step that cannot fit is refused before anything is built: the model's weights,
gradients and AdamW moments (16 bytes a parameter), the probabilities, or the two together.
No TensorFlow here: the parent of a training process (training/train_process.py) imports none.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple

from core.console import in_bytes
from core.errors import OutOfMemory

# what TensorFlow's and XLA's allocators say (a ResourceExhaustedError may also be a full disk or
# too many open files: those are not memory)
_ALLOCATION = re.compile(r"OOM when allocating tensor with shape\s*\[[^\]]*\] and type \w+"
                         r"|Out of memory while trying to allocate \d+ bytes")
_DEVICE = re.compile(r"device:([A-Z_]+:\d+)")
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ADVICE = ("lower --batch_size (a larger --gradient_accumulation_steps keeps the tokens per iteration) or "
          "--block_size, or train a smaller model")


def attention(n_layer: int, n_head: int, block_size: int, batch_size: int, dtype: str,
              training: bool = True) -> Tuple[int, str]:
    """(bytes, in words) of the attention probabilities (the model materializes them: no flash
    attention) that a training step keeps for its backward pass, every layer's, n_layer x batch_size
    x n_head x block_size^2; or, evaluating, one layer's."""
    count = (n_layer if training else 1) * batch_size * n_head * block_size ** 2
    size = count * _BYTES.get(dtype, 4)
    if training:
        what = (f"the attention probabilities a step keeps for its backward pass, n_layer x batch_size x n_head x "
                f"block_size^2 = {n_layer} x {batch_size} x {n_head} x {block_size:,}^2")
    else:
        what = (f"each layer's attention probabilities, batch_size x n_head x block_size^2 = {batch_size} x "
                f"{n_head} x {block_size:,}^2")
    return size, f"{what} = {count:,} ({in_bytes(size)} in {dtype})"


def is_out_of_memory(error) -> bool:
    """Whether a ResourceExhaustedError (or numpy's MemoryError) is an allocation that failed."""
    return isinstance(error, MemoryError) or bool(_ALLOCATION.search(getattr(error, "message", str(error))))


def ran_out(error) -> str:
    """"out of memory on CPU:0 (OOM when allocating tensor with shape[...] and type float)": where
    TensorFlow's (or XLA's) ResourceExhaustedError ran out, as much as its message says."""
    message = getattr(error, "message", str(error))
    allocation = _ALLOCATION.search(message)
    device = _DEVICE.search(message)
    return (f"out of memory{' on ' + device.group(1) if device else ''}"
            f"{' (' + ' '.join(allocation.group(0).split()) + ')' if allocation else ''}")


def resource_exhausted(error, model_config, cfg, iteration: int, training: bool = True) -> OutOfMemory:
    """TensorFlow's out-of-memory error at `iteration` of a training (training: in a step, else in an
    evaluation) as one line."""
    _, held = attention(model_config.n_layer, model_config.n_head, model_config.block_size, cfg.batch_size,
                        cfg.dtype, training)
    return OutOfMemory(f"{ran_out(error)} at iteration {iteration}{'' if training else ' (its evaluation)'} with "
                       f"--batch_size={cfg.batch_size} and --block_size={model_config.block_size}: {held}, besides the "
                       f"rest; {ADVICE}")


def model_state(n_layer: int, n_embd: int, vocab_size: int, block_size: int) -> Tuple[int, str]:
    """(bytes, in words) of what a training keeps of the model whatever its batch: its weights, their
    gradients and AdamW's two moments, float32 each (16 bytes a parameter; a mixed precision's copies
    come on top), for the ~12 n_layer n_embd^2 + (vocab_size + block_size) n_embd parameters."""
    params = 12 * n_layer * n_embd ** 2 + (vocab_size + block_size) * n_embd
    size = 16 * params
    return size, (f"its weights, their gradients and AdamW's two moments, 16 bytes for each of its "
                  f"{params / 1e6:,.0f}M parameters ({in_bytes(size)})")


def check_fits(n_layer: int, n_head: int, block_size: int, batch_size: int, dtype: str, n_embd: int = 0,
               vocab_size: int = 0, memory: Optional[int] = None, where: str = "this machine") -> None:
    """OutOfMemory, before anything is built, when a training step cannot fit in `memory` (bytes;
    by default machine_memory): the model's state (`model_state`, with n_embd and vocab_size) or what a
    step keeps for its backward pass (`attention`) is alone more, or the two together. A lower bound,
    so never a refusal of a step that would fit in that memory (swap aside); a step above it may still
    run out (resource_exhausted, or the kernel's out-of-memory killer)."""
    memory = memory or machine_memory()
    if not memory:
        return
    state, held = model_state(n_layer, n_embd, vocab_size, block_size)
    if state > memory:
        raise OutOfMemory(f"a model of n_layer={n_layer} and n_embd={n_embd} cannot train on {where}: {held} are "
                          f"alone more than its memory ({in_bytes(memory)}); train a smaller model")
    size, kept = attention(n_layer, n_head, block_size, batch_size, dtype)
    if size > memory:
        raise OutOfMemory(f"--block_size={block_size} with --batch_size={batch_size} cannot train on {where}: "
                          f"{kept}, are alone more than its memory ({in_bytes(memory)}); {ADVICE}")
    if size + state > memory:
        raise OutOfMemory(f"--block_size={block_size} with --batch_size={batch_size} cannot train on {where}: "
                          f"{kept}, with {held}, are more than its memory ({in_bytes(memory)}); "
                          f"{ADVICE}")


def machine_memory() -> Optional[int]:
    """This machine's memory in bytes, or this process's container limit when lower: the lowest of
    its memory cgroup's and their parents' (v1 or v2; a pod's limit is its container cgroup's
    parent's); None where neither can be read."""
    try:
        sizes = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    except (ValueError, OSError, AttributeError):
        sizes = []
    for version, directory in memory_cgroups():
        while directory == "/sys/fs/cgroup" or directory.startswith("/sys/fs/cgroup/"):  # (v2's root: a container's)
            value = _read_int(os.path.join(directory, "memory.limit_in_bytes" if version == 1 else "memory.max"))
            if value:  # v2's "max" (no limit): None
                sizes.append(value)
            directory = os.path.dirname(directory)
    return min(sizes) if sizes else None


def largest_gpu_memory() -> Optional[int]:
    """The memory in bytes of this machine's largest NVIDIA GPU (nvidia-smi's); 0 where it sees
    none; None where there may be a GPU whose memory cannot be read (a device node without
    nvidia-smi, an AMD GPU)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                    capture_output=True, text=True, timeout=10).stdout
            return max((int(float(line)) * 2 ** 20 for line in listed.split()), default=0)
        except (OSError, ValueError, subprocess.SubprocessError):
            return None
    nodes = ["/dev/nvidia0", "/dev/kfd"]
    return None if any(os.path.exists(node) for node in nodes) else 0


def oom_kills() -> Dict[str, Optional[int]]:
    """How many processes the kernel's out-of-memory killer has ended: of this process's memory
    cgroup ("cgroup": v1's memory.oom_control, v2's memory.events; where a container or pod counts
    its own) and of the whole machine since boot ("machine": /proc/vmstat); None where not kept."""
    counts = {"cgroup": None, "machine": _field("/proc/vmstat", "oom_kill")}
    for version, directory in memory_cgroups():
        count = _field(os.path.join(directory, "memory.oom_control" if version == 1 else "memory.events"), "oom_kill")
        if count is not None:
            counts["cgroup"] = count
            break
    return counts


def killed_for_memory(process: str, cfg, before: Dict[str, Optional[int]], then: str = "") -> Optional[OutOfMemory]:
    """The line for `process`, killed by SIGKILL while it ran cfg (a TrainConfig), when the kernel's
    out-of-memory killer ended a process meanwhile (oom_kills `before` it, and now): in its own memory
    cgroup (a kill of this container's), else somewhere on the machine (most likely it); else None.
    `then`: what a run with lower settings does, said last."""
    now = oom_kills()
    if before["cgroup"] is not None and now["cgroup"] is not None and now["cgroup"] > before["cgroup"]:
        how = "was killed by the kernel's out-of-memory killer (SIGKILL, and its memory cgroup's oom_kill count rose"
    elif before["machine"] is not None and now["machine"] is not None and now["machine"] > before["machine"]:
        how = ("was killed by SIGKILL, most likely by the kernel's out-of-memory killer (/proc/vmstat's oom_kill "
               "count rose")
    else:
        return None
    memory = machine_memory()
    return OutOfMemory(f"{process} {how} while it ran): with --batch_size={cfg.batch_size} and --block_size="
                       f"{cfg.block_size} it needed more than the memory of this machine or its container"
                       f"{f' ({in_bytes(memory)})' if memory else ''}; {ADVICE}{f'; {then}' if then else ''}")


def memory_cgroups() -> List[Tuple[int, str]]:
    """(version, directory) of this process's memory cgroups: its own (/proc/self/cgroup's
    "ID:CONTROLLERS:PATH"), then the hierarchy's mount root (a container's own cgroup where its
    cgroups are not namespaced and /proc/self/cgroup names the host's path)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    found = []
    for line in lines:
        ident, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        path = path.rstrip("/")
        if "memory" in controllers.split(","):
            found.append((1, f"/sys/fs/cgroup/memory{path}"))
        elif ident == "0" and not controllers:  # the unified hierarchy, alone or beside v1's
            found += [(2, f"{root}{path}") for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")]
    found += [(1, "/sys/fs/cgroup/memory"), (2, "/sys/fs/cgroup")]
    return [(version, directory) for version, directory in dict.fromkeys(found) if os.path.isdir(directory)]


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _field(path: str, name: str) -> Optional[int]:
    """The number after `name` on its line of a "name value" file (/proc/vmstat, memory.events)."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == name:
                    return int(value)
    except (OSError, ValueError):
        pass
    return None

