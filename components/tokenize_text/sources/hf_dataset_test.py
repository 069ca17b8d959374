"""Hugging Face datasets read safely: a dataset's own loading script runs only when the user allows it
(said in a line), and a hub dataset is asked for at the revision it is pinned to."""

import pytest

from components.tokenize_text import sources

SCRIPT = '''
import datasets


class Scripted(datasets.GeneratorBasedBuilder):
    def _info(self):
        return datasets.DatasetInfo(features=datasets.Features({"text": datasets.Value("string")}))

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN)]

    def _generate_examples(self):
        for i in range(30):
            yield i, {"text": f"document {i}, made by the dataset's own loading script"}
'''


def _cfg(name, **settings):
    return {"dataset_name": name, "dataset_config": None, "dataset_split": "train", "streaming": False,
            "text_column": "text", "dataset_revision": None, "trust_remote_code": False, **settings}


def test_a_datasets_own_loading_script_runs_only_when_allowed_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    scripted = tmp_path / "scripted"
    scripted.mkdir()
    (scripted / "scripted.py").write_text(f"# {tmp_path}\n{SCRIPT}")  # its own: datasets caches modules by content
    with pytest.raises(sources.RemoteCodeRefused) as refused:
        sources.plan_dataset(_cfg(str(scripted)), "hash", None)
    assert str(refused.value) == (f"dataset_name='{scripted}' loads itself with a script of its own, which runs only "
                                  f"when you allow it: read it, then set --trust_remote_code=True (and pin it with "
                                  f"--dataset_revision)")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.arrow"))  # nothing made

    lines = []
    items, info = sources.plan_dataset(_cfg(str(scripted), trust_remote_code=True), "hash", None, log=lines.append)
    assert lines == [f"TokenizeText: trust_remote_code=True: dataset_name='{scripted}' may run a loading script of "
                     f"its own (revision not pinned: the latest)"]
    assert info["num_rows"] == 30 and items == [{"kind": "rows", "start": 0, "end": 30}]


def test_a_hub_dataset_is_read_at_its_pinned_revision(monkeypatch):
    """Offline the hub cannot answer: `datasets` itself is called (and watched), and fails so."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    calls, load = [], datasets.load_dataset

    def watched(*args, **kwargs):
        calls.append(kwargs)
        return load(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", watched)
    with pytest.raises(sources.DatasetNotLoaded, match=r"^cannot load dataset_name='openwebtext' \(config=None, "
                                                       r"split='train', revision='4b1aa1a3'\): ConnectionError: "):
        sources.load_hf_dataset(_cfg("openwebtext", dataset_revision="4b1aa1a3", streaming=True))
    assert [(c["revision"], c["trust_remote_code"]) for c in calls] == [("4b1aa1a3", False)]


def test_a_file_that_does_not_parse_is_one_line_saying_where(tmp_path, capfd, monkeypatch):
    """datasets says only "An error occurred while generating the dataset" (and logs the cause twice):
    the line names the file and the cause, which datasets no longer logs."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "one"}\n{"text": "two"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(sources.DatasetNotLoaded) as error:
        sources.load_hf_dataset(_cfg(str(corpus)))
    assert str(error.value) == (f"cannot load dataset_name='{corpus}': ArrowInvalid: JSON parse error: "
                                f"Column(/text) changed from string to number in row 2")
    assert "JSON parse error" not in capfd.readouterr().err
