"""Fixtures shared by every test: where the read-only shared data lies, and quiet TensorFlow."""

import os

import pytest

import model  # noqa: F401  (sets TensorFlow's CPU defaults, as runner.py does, before any test loads it)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers' TF classes need Keras 2

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
SHARED_DATA = os.environ.get("NANOGPT_TFX_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data beside the checkout: Tiny Shakespeare and the GPT-2 BPE files."""
    if not os.path.isfile(os.path.join(SHARED_DATA, "tinyshakespeare.txt")):
        raise FileNotFoundError(f"shared data not found at {SHARED_DATA}: tests need ../shared/data "
                                f"(or NANOGPT_TFX_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shakespeare_text(shared_data):
    with open(os.path.join(shared_data, "tinyshakespeare.txt"), encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="session")
def bpe_dir(shared_data):
    return os.path.join(shared_data, "gpt2_bpe")


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, where writes past its size fail with a real ENOSPC (mounting needs root:
    skipped otherwise)."""
    import subprocess

    mount_point = tmp_path / "small_disk"
    os.makedirs(mount_point)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount_point)],
                      capture_output=True).returncode:
        pytest.skip("mounting a 1 MiB tmpfs needs root")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def pipeline_configuration():
    """configuration(*argv): the checked PipelineConfig that `runner.py run ARGV` would run, built by
    runner.py's own argument handling with the pipeline itself left unrun."""
    def configuration(*argv):
        """The checked PipelineConfig that `runner.py run ARGV` would run."""
        import runner

        parser_args = ["run", *argv]
        captured = {}
        handler = runner.run

        def keep(args, overrides):
            captured["config"] = runner._pipeline_config(args, overrides)

        runner.run = keep
        try:
            runner.main(parser_args)
        finally:
            runner.run = handler
        return captured["config"]

    return configuration
