"""Fixtures shared by every test: where the read-only shared data lies, and quiet TensorFlow."""

import os

import pytest

import model  # noqa: F401  (sets TensorFlow's CPU defaults, as runner.py does, before any test loads it)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers' TF classes need Keras 2
# `runner.py run` starts its training and infra-check processes when it starts (core/prestart.py):
# most of the suite's runs end before the Trainer, where that would be two TensorFlow imports for
# nothing. tests/conftest.py's char_run runs with them.
os.environ.setdefault("NANOGPT_TFX_PRESTART", "0")

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
SHARED_DATA = os.environ.get("NANOGPT_TFX_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))


@pytest.fixture(scope="session", autouse=True)
def own_temp_dir(tmp_path_factory):
    """The session's temporary files in a directory of its own, removed at its end, as runner.py's
    (core/tempdir.py): what its runs' processes leave (autograph's files of those ended by os._exit,
    of those the tests kill) goes with it. pytest's own tmp_path directories are kept as pytest keeps them."""
    from core.tempdir import own_temp_dir

    tmp_path_factory.getbasetemp()  # made under the temporary directory before it changes
    with own_temp_dir() as directory:
        yield directory


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


# A character model small enough to train in seconds; tests override what they need.
TINY_CHAR_RUN = dict(tokenizer="char", n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, dropout=0.0,
                     bias=False, learning_rate=3e-3, max_iters=20, eval_interval=10, eval_iters=2, warmup_iters=2,
                     lr_decay_iters=20, gradient_accumulation_steps=1, tensorboard=False)


@pytest.fixture(scope="session")
def train_char_model(tmp_path_factory, shakespeare_text):
    """train_char_model(characters, **settings): a Trainer that has trained a character model (TINY_CHAR_RUN
    with `settings` over it) on the first `characters` of Tiny Shakespeare, in a directory of its own."""
    def train(characters, **settings):
        from training.config import make_config
        from training.train import Trainer

        root = tmp_path_factory.mktemp("char_run")
        text_file = root / "input.txt"
        text_file.write_text(shakespeare_text[:characters], encoding="utf-8")
        cfg = make_config(**{**TINY_CHAR_RUN, **settings}, out_dir=str(root / "out"), text_file=str(text_file))
        trainer = Trainer(cfg, log=lambda *_: None)
        trainer.run()
        return trainer

    return train


def pytest_collection_modifyitems(items):
    """The tests of a full disk (those on a tmpfs) are marked disk_full, those in a memory cgroup
    memory_limit: `-m "not disk_full and not memory_limit"` leaves them out, in so many words, where
    no tmpfs can be mounted and no cgroup made."""
    for item in items:
        if "tmpfs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.disk_full)
        if "memory_cgroup" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.memory_limit)


@pytest.fixture
def memory_cgroup():
    """memory_cgroup(limit_bytes, below=False): the command prefix that runs a command in a new memory
    cgroup (v1 or v2) of that limit and no swap, where the kernel's out-of-memory killer ends the
    largest process that goes past it (SIGKILL), as in a pod past its limit; below=True: in a cgroup
    of no limit of its own under that one, as a container in a pod whose limit is the pod's. Its
    processes are killed and the cgroups removed after the test. Where none can be made (it needs
    root) the test fails saying so."""
    import signal
    import time

    made = []

    def make(limit, below=False):
        from training.memory import memory_cgroups

        name = f"nanogpt-tfx-test-{os.getpid()}-{len(made)}"
        try:
            # under this process's own memory cgroup (a sandbox's limits and accounting stay on it)
            own = next(iter(memory_cgroups()), None)
            if own is None:
                raise OSError("no memory cgroup of this process under /sys/fs/cgroup")
            version, parent = own
            if version == 2:
                with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                    if "memory" not in f.read().split():
                        raise OSError(f"the memory controller is not enabled for the cgroups under {parent}")
            path = os.path.join(parent, name)
            os.mkdir(path)
            made.append(path)
            limits = [("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", limit),
                      ("memory.swappiness", 0)] if version == 1 else [("memory.max", limit), ("memory.swap.max", 0)]
            for file, value in limits:
                if os.path.exists(os.path.join(path, file)):
                    with open(os.path.join(path, file), "w") as f:
                        f.write(str(value))
            if below:
                if version == 2:
                    with open(os.path.join(path, "cgroup.subtree_control"), "w") as f:
                        f.write("+memory")
                path = os.path.join(path, "below")
                os.mkdir(path)
                made.append(path)
        except OSError as e:
            pytest.fail(f"cannot make a memory cgroup for this out-of-memory test ({e}): run the tests as root, or "
                        f"leave the memory-limit tests out in so many words with -m 'not memory_limit'", pytrace=False)
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', os.path.join(path, "cgroup.procs")]

    yield make
    for path in reversed(made):  # a cgroup's children before it
        with open(os.path.join(path, "cgroup.procs")) as f:
            for pid in f.read().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for _ in range(100):  # a cgroup is removed once its last process has gone
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.1)


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(size): a new tmpfs of that size ("1M", "4M"), where writes past it fail with a real
    ENOSPC; unmounted after the test. Where none can be mounted (mounting needs root) the test
    fails saying so: a disk-full test never passes or skips without having filled a disk."""
    import subprocess

    mounted = []

    def mount(size):
        mount_point = tmp_path / f"disk{len(mounted)}_{size}"
        os.makedirs(mount_point)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                                capture_output=True, text=True)
        if result.returncode:
            why = " ".join(result.stderr.split()) or "mount failed"
            pytest.fail(f"cannot mount a {size} tmpfs for this disk-full test ({why}): run the tests as root (or with "
                        f"CAP_SYS_ADMIN), or leave the disk-full tests out in so many words with -m 'not disk_full'",
                        pytrace=False)
        mounted.append(mount_point)
        return mount_point

    yield mount
    for mount_point in mounted:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def small_disk(tmpfs):
    """A 1 MiB tmpfs (see tmpfs)."""
    return tmpfs("1M")


@pytest.fixture
def pipeline_configuration():
    """configuration(*argv): the checked RunConfig that `runner.py run ARGV` would run, built by
    runner.py's own argument handling with the pipeline itself left unrun."""
    def configuration(*argv):
        """The checked RunConfig that `runner.py run ARGV` would run."""
        import runner

        parser_args = ["run", *argv]
        captured = {}
        handler = runner.run

        def keep(args, overrides):
            captured["config"] = runner._run_config(args, overrides, default_data=runner._tiny_shakespeare)

        runner.run = keep
        try:
            runner.main(parser_args)
        finally:
            runner.run = handler
        return captured["config"]

    return configuration
