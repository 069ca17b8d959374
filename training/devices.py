"""What a training run runs on, in words, and the accelerator's peak FLOP/s for MFU.

"1 CPU (2 cores), no GPU", "8 x NVIDIA H100 80GB HBM3, MirroredStrategy", "TPU v4 (8 cores),
TPUStrategy". A GPU that `nvidia-smi` sees but TensorFlow cannot use (no CUDA build installed: see
README "GPU") gets one warning line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import List, Optional, Tuple

import tensorflow as tf

# Dense bfloat16/float16 tensor-core peak FLOP/s (no sparsity), per device, from the vendors' data
# sheets; the first name that the device's name contains wins (so "H100 PCIe" before "H100").
PEAK_FLOPS = (
    ("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12), ("A10G", 125e12), ("A10", 125e12),
    ("L4", 121e12), ("A40", 150e12), ("RTX A6000", 155e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12),
    ("V100", 125e12), ("T4", 65e12),
    # TPUs, per chip, by TPU_ACCELERATOR_TYPE's prefix (v4-8: TPU v4)
    ("v6e", 918e12), ("v5p", 459e12), ("v5e", 197e12), ("v5litepod", 197e12), ("v4", 275e12), ("v3", 123e12),
    ("v2", 45e12),
)


def peak_flops(device_name: str) -> float:
    """The peak FLOP/s of a device by its name; 0.0 when it is not in PEAK_FLOPS."""
    return next((flops for name, flops in PEAK_FLOPS if name in device_name), 0.0)


def _gpu_names() -> List[str]:
    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", "GPU"))
        except (ValueError, RuntimeError):
            names.append("GPU")
    return names


def describe(strategy: tf.distribute.Strategy) -> Tuple[str, float]:
    """(what the run trains on, the peak FLOP/s of one of its accelerators or 0.0 on a CPU)."""
    kind = type(strategy).__name__
    strategy_name = "one device" if kind in ("_DefaultDistributionStrategy", "DefaultDistributionStrategy") else kind
    if isinstance(strategy, tf.distribute.TPUStrategy):
        accelerator = os.environ.get("TPU_ACCELERATOR_TYPE", "")
        cores = strategy.num_replicas_in_sync
        return (f"TPU {accelerator or ''} ({cores} cores), {strategy_name}".replace("  ", " "),
                peak_flops(accelerator))
    gpus = _gpu_names()
    if gpus:
        counted = {name: gpus.count(name) for name in gpus}
        text = ", ".join(f"{n} x {name}" if n > 1 else name for name, n in counted.items())
        return f"{text}, {strategy_name}", peak_flops(gpus[0])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return f"1 CPU ({cores} cores), no GPU" + ("" if strategy_name == "one device" else f", {strategy_name}"), 0.0


def unused_gpu_warning() -> Optional[str]:
    """One line when nvidia-smi lists GPUs that TensorFlow does not see, else None."""
    if not shutil.which("nvidia-smi") or tf.config.list_physical_devices("GPU"):
        return None
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = [line for line in listed.splitlines() if line.startswith("GPU ")]
    if not gpus:
        return None
    return (f"warning: nvidia-smi sees {len(gpus)} GPU(s) but TensorFlow cannot use them, so this run trains on "
            f"the CPU: install the gpu extra (bash scripts/setup.sh --gpu; README \"GPU\")")


def _cpuinfo(field: str, cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """The first value of `field` in /proc/cpuinfo ("model name", "flags"); None where there is none."""
    try:
        with open(cpuinfo) as f:
            return next((line.split(":", 1)[-1].strip() for line in f if line.split(":", 1)[0].strip() == field),
                        None)
    except OSError:
        return None


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name as `lscpu` gives it ("Intel(R) Xeon(R) Processor"), or the machine's kind."""
    import platform

    return _cpuinfo("model name", cpuinfo) or platform.processor() or platform.machine() or "unknown CPU"


def on_cpu(strategy: tf.distribute.Strategy) -> bool:
    """Whether the strategy's replicas are this machine's CPU (no GPU, no TPU): its memory is the machine's."""
    return not isinstance(strategy, tf.distribute.TPUStrategy) and not tf.config.list_physical_devices("GPU")


def _cpu_without(flag: str, cpuinfo: str) -> bool:
    """Whether the work runs on a CPU (no GPU) whose flags lack `flag`; False where it cannot tell."""
    if tf.config.list_physical_devices("GPU"):
        return False
    flags = _cpuinfo("flags", cpuinfo)
    return flags is not None and flag not in flags.split()


def slow_bfloat16_warning(cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """One line when bfloat16 weights would decode slower than float32 here: no GPU, and a CPU
    without AVX-512, on which TensorFlow runs bfloat16 products in its generic kernels instead of
    oneDNN's (BENCHMARKS.md: several times slower than float32's). None where it cannot tell."""
    if not _cpu_without("avx512f", cpuinfo):
        return None
    return ("warning: this CPU has no AVX-512, so TensorFlow multiplies bfloat16 weights in its generic "
            "kernels, slower than float32 (BENCHMARKS.md): --weights=float32 decodes faster here")


def slow_float16_warning(dtype: str, cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """One line when a float16 training runs on a CPU without AVX512-FP16, where TensorFlow's float16
    kernels are generic ones, slower than float32's (2.0-2.2x the time an iteration on an AVX-512 CPU
    without FP16: docs/benchmark_history.md); nanoGPT trains float32 on a CPU whatever its dtype. None
    where it cannot tell, on a GPU, and for another dtype."""
    if dtype != "float16" or not _cpu_without("avx512_fp16", cpuinfo):
        return None
    return ("warning: this CPU has no AVX512-FP16, so TensorFlow runs float16 in its generic kernels, slower than "
            "float32 (nanoGPT trains float32 on a CPU): --dtype=float32 trains faster here")
