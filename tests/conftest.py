"""What the end-to-end tests share: a small corpus, a small GPT-2 baseline, and the default pipeline
run once (char_run), in whichever test file of this worker first needs it."""

import time

import pytest

from test_helpers import pipeline_runs
from test_helpers.pipeline_runs import TINY_TRAINING


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, shakespeare_text):
    path = tmp_path_factory.mktemp("corpus") / "shakespeare_small.txt"
    path.write_text(shakespeare_text[:30000], encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def gpt2_baseline(tmp_path_factory, bpe_dir):
    """A small GPT-2 checkpoint made here (the hub's are not reachable), as --baselines takes one,
    with the BPE files it reads the val text with: {"baselines": [dir], "bpe_dir": dir}."""
    from model import GPT, GPTConfig

    checkpoint = str(tmp_path_factory.mktemp("baseline") / "tiny-gpt2")
    GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=50257), seed=0).save_pretrained(checkpoint)
    return {"baselines": [checkpoint], "bpe_dir": bpe_dir}


@pytest.fixture(scope="session")
def char_run(tmp_path_factory, small_corpus, gpt2_baseline):
    """The default (character) pipeline with a GPT-2 baseline, run once, then again unchanged. What
    the tests check of these two runs is recorded here (char_run.recorded), before any test runs more
    in the same store: each test passes alone and in any order (a test that reads char_run's first
    artifacts takes the first of their type)."""
    from components.infra_validator import check
    from core import prestart
    from orchestration import local
    from pipeline import metadata
    from pipeline.configs import make_run_config
    from training import train_process

    config = make_run_config("shakespeare_char", input_pattern=small_corpus,
                             output_dir=str(tmp_path_factory.mktemp("char_run")),
                             val_loss_threshold=3.5, **gpt2_baseline, **TINY_TRAINING)
    started = time.time()
    handed = len(prestart.handed_over)
    with local.prestarted() as start_check:  # as `runner.py run` starts them (the suite's other runs do not)
        start_check()
        pipeline_runs.rerun(config)
    assert prestart.handed_over[handed:] == [train_process.PRESTART_NAME, check.PRESTART_NAME]  # both taken
    versions, summary = pipeline_runs.pushed_versions(config), metadata.run_summary(config.metadata_path)
    time_split = metadata.time_split(config.metadata_path, started, time.time())
    started = time.time()
    config.recorded = dict(versions=versions, summary=summary, time_split=time_split,
                           rerun_states=pipeline_runs.rerun(config),
                           rerun_time_split=metadata.time_split(config.metadata_path, started, time.time()),
                           versions_after_rerun=pipeline_runs.pushed_versions(config))
    return config
