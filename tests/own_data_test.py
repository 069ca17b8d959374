"""README's "Train on your own data" commands, each run on a small input: the configuration that
`runner.py run` checks and builds, and the TokenizeText execution it starts with (both splits
non-empty, the split method the README promises)."""

import os
import re
import shlex

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_commands():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        section = f.read().split("## Train on your own data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("#", 1)[0])[3:] for line in block.splitlines() if line.strip()]


def _small_inputs(root, text):
    import datasets

    (root / "my_book.txt").write_text(text[:3000], encoding="utf-8")
    (root / "my_texts").mkdir()
    for i in range(3):
        (root / "my_texts" / f"part{i}.txt").write_text(text[i * 1000:(i + 1) * 1000], encoding="utf-8")
    rows = [text[i * 400:(i + 1) * 400] for i in range(8)]
    datasets.Dataset.from_dict({"body": rows}).to_json(str(root / "corpus.jsonl"), lines=True)
    datasets.Dataset.from_dict({"text": rows}).to_parquet(str(root / "corpus.parquet"))
    datasets.Dataset.from_dict({"text": rows}).save_to_disk(str(root / "my_dataset_dir"))


def test_the_readme_own_data_commands(tmp_path, monkeypatch, shakespeare_text, bpe_dir, pipeline_configuration):
    _configuration = pipeline_configuration
    import datasets
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import standard_artifacts

    from components.tokenize_text.executor import Executor

    commands = _readme_commands()
    assert len(commands) == 5 and all(c[0].startswith(("--data=", "--dataset_name=")) for c in commands)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("NANOGPT_TFX_BPE_DIR", os.path.abspath(bpe_dir))
    monkeypatch.chdir(tmp_path)
    _small_inputs(tmp_path, shakespeare_text)
    for i, args in enumerate(commands):
        config = _configuration(*args, f"--output={tmp_path / 'out'}")
        assert bool(config.data.input_pattern) != bool(config.data.dataset_name)
        examples = standard_artifacts.Examples()
        examples.uri = str(tmp_path / f"examples{i}")
        context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=config.pipeline.beam_pipeline_args,
                                                              tmp_dir=str(tmp_path / "tmp"))
        Executor(context).Do({}, {"examples": [examples]}, {"settings": config.data.to_json()})
        counts = {k: examples.get_custom_property(k) for k in ("num_tokens_train", "num_tokens_val")}
        assert all(counts.values()), (args, counts)
        assert examples.get_custom_property("split_method") == "head_tail", args  # small corpora
        assert examples.get_custom_property("tokenizer") == config.data.tokenizer
    assert not os.path.exists(tmp_path / "out")  # nothing ran but the tokenization


def test_a_file_of_rows_given_as_text_files_is_said_to_be_read_as_plain_text(tmp_path, pipeline_configuration,
                                                                            capsys):
    """`--data=corpus.jsonl` trains on the JSON syntax too (it once did so without a word): a warning line
    names --dataset_name, which reads its rows' text; a text file, or --dataset_name, gets none."""
    (tmp_path / "c.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "rows.csv").write_text("text\nhello\n")
    (tmp_path / "book.txt").write_text("hello\n")
    for data in (tmp_path / "c.jsonl", tmp_path / "rows.csv"):
        pipeline_configuration(f"--data={data}")
        assert capsys.readouterr().out == (
            f"warning: --data reads {data} as plain text, its {data.suffix[1:].upper()} syntax and all; "
            f"--dataset_name={data} reads the text of its rows (--text_column)\n")
    (tmp_path / "rows").mkdir()  # a folder of them
    (tmp_path / "rows" / "a.jsonl").write_text('{"text": "hello"}\n')
    pipeline_configuration(f"--data={tmp_path}/rows")
    assert capsys.readouterr().out == (
        f"warning: --data reads the files of {tmp_path}/rows ({tmp_path}/rows/a.jsonl, ...) as plain text, its JSONL "
        f"syntax and all; --dataset_name=FILE reads the text of a file's rows (--text_column)\n")
    pipeline_configuration(f"--data={tmp_path}/book.txt")
    pipeline_configuration(f"--dataset_name={tmp_path}/c.jsonl")
    assert capsys.readouterr().out == ""


def test_an_output_reached_by_a_symbolic_link_is_its_own_path(tmp_path, shared_data, pipeline_configuration):
    """The Trainer's and the Pusher's settings hold paths in the output: by a link's path, a rerun missed
    their cache and trained the same model again."""
    (tmp_path / "runs").mkdir()
    os.symlink(tmp_path / "runs", tmp_path / "link")
    config = pipeline_configuration(f"--data={shared_data}/tinyshakespeare.txt", f"--output={tmp_path}/link/a")
    assert config.output_dir == str(tmp_path / "runs" / "a")


def test_data_and_dataset_name_exclude_each_other_and_any_preset_takes_either(tmp_path, shared_data,
                                                                             pipeline_configuration):
    _configuration = pipeline_configuration
    with pytest.raises(SystemExit):
        _configuration(f"--data={shared_data}/tinyshakespeare.txt", "--dataset_name=x.jsonl")
    (tmp_path / "c.jsonl").write_text('{"text": "hello"}\n')
    config = _configuration("--preset=shakespeare", f"--dataset_name={tmp_path}/c.jsonl")
    assert config.data.input_pattern is None and config.data.dataset_name == f"{tmp_path}/c.jsonl"
    config = _configuration("--preset=owt_gpt2_124m", f"--data={shared_data}/tinyshakespeare.txt")
    assert config.data.dataset_name is None and not config.data.streaming and config.data.input_pattern.endswith("tinyshakespeare.txt")
