"""Device descriptions, the peak-FLOPs table, and the warning for a GPU that TensorFlow cannot use."""

import os
import stat

import tensorflow as tf

from training import devices


def test_peak_flops_by_device_name():
    assert devices.peak_flops("NVIDIA A100-SXM4-40GB") == 312e12
    assert devices.peak_flops("NVIDIA H100 PCIe") == 756e12 and devices.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert devices.peak_flops("Tesla T4") == 65e12 and devices.peak_flops("v4-8") == 275e12
    assert devices.peak_flops("Some Future GPU") == 0.0


def test_a_cpu_run_names_its_cores_and_has_no_peak():
    text, peak = devices.describe(tf.distribute.get_strategy())
    assert text == f"1 CPU ({len(os.sched_getaffinity(0))} cores), no GPU" and peak == 0.0


def test_a_gpu_that_tensorflow_cannot_use_gets_one_warning(tmp_path, monkeypatch):
    assert not tf.config.list_physical_devices("GPU")  # this machine's TensorFlow sees none
    monkeypatch.setenv("PATH", str(tmp_path), prepend=os.pathsep)
    fake = tmp_path / "nvidia-smi"  # the driver's tool, as a machine with a GPU has it
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-1)'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    warning = devices.unused_gpu_warning()
    assert warning.startswith("warning: nvidia-smi sees 1 GPU(s) but TensorFlow cannot use them")
    assert "scripts/setup.sh --gpu" in warning and "\n" not in warning


def test_bfloat16_weights_on_a_cpu_without_avx512_get_one_warning(tmp_path):
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
                    "processor\t: 1\nflags\t\t: fpu sse2 avx avx2 fma\n")
    warning = devices.slow_bfloat16_warning(str(avx2))
    assert warning.startswith("warning: this CPU has no AVX-512") and "--weights=float32" in warning
    avx512 = tmp_path / "avx512"
    avx512.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert devices.slow_bfloat16_warning(str(avx512)) is None
    assert devices.slow_bfloat16_warning(str(tmp_path / "none")) is None  # cannot tell: no warning


def test_float16_training_on_a_cpu_without_avx512_fp16_gets_one_warning(tmp_path):
    zen4 = tmp_path / "zen4"  # AVX-512 with BF16, without FP16
    zen4.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    warning = devices.slow_float16_warning("float16", str(zen4))
    assert warning.startswith("warning: this CPU has no AVX512-FP16") and "--dtype=float32" in warning
    sapphire_rapids = tmp_path / "spr"
    sapphire_rapids.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_fp16 amx_tile\n")
    assert devices.slow_float16_warning("float16", str(sapphire_rapids)) is None
    assert devices.slow_float16_warning("bfloat16", str(zen4)) is None
    assert devices.slow_float16_warning("float16", str(tmp_path / "none")) is None  # cannot tell: no warning


def test_cpu_name_is_lscpus_model_name(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14 96-Core Processor\nflags\t\t: avx2\n")
    assert devices.cpu_name(str(cpuinfo)) == "AMD EPYC 9R14 96-Core Processor"
    assert devices.cpu_name(str(tmp_path / "none"))  # no /proc/cpuinfo: the machine's kind, never empty
