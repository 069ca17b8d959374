"""TokenizeText's statistics (real TFDV in its Beam pipeline, read back with TFX's and TFDV's own
readers) and its exact deduplication, on a folder of documents with empty ones and duplicates."""

import base64
import collections
import re

import pytest
import tensorflow_data_validation as tfdv
from tfx.components.statistics_gen import stats_artifact_utils

from components.tokenize_text import sources, statistics
from components.tokenize_text.executor_test import bpe  # noqa: F401 (a fixture)
from components.tokenize_text.executor_test import EOT, chunks_by_doc, prop, run_executor


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shakespeare_text):
    """24 distinct paragraphs, then 4 copies of some, one more copy that differs only in its
    byte-order mark and CRLF line ends (the same text once normalized), 2 empty files, a
    whitespace-only one and one with an emoji: 33 files, 5 duplicates. Returns the folder and the
    texts by name."""
    folder = tmp_path_factory.mktemp("corpus")
    paragraphs = list(dict.fromkeys(p + "\n" for p in shakespeare_text.split("\n\n") if len(p) > 200))[:24]
    texts = {f"doc{i:02d}.txt": p for i, p in enumerate(paragraphs)}
    texts.update({f"z_copy{i}.txt": paragraphs[i] for i in range(4)})
    texts.update({"empty1.txt": "", "empty2.txt": "", "spaces.txt": " \n \n",
                  "unicode.txt": "Caf\u00e9 \U0001F600\n" * 3})
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "z_crlf.txt").write_bytes(b"\xef\xbb\xbf" + paragraphs[4].replace("\n", "\r\n").encode())
    texts["z_crlf.txt"] = paragraphs[4]
    return folder, dict(sorted(texts.items()))


def _features(stats_artifact, split):
    """{feature name: FeatureNameStatistics} of a split, read as TFX's SchemaGen and ExampleValidator read it."""
    dataset = stats_artifact_utils.load_statistics(stats_artifact, split).proto().datasets[0]
    return dataset, {f.path.step[0]: f for f in dataset.features}


def _ones(feature):
    """How many documents have the 0/1 feature at 1."""
    return feature.num_stats.common_stats.num_non_missing - feature.num_stats.num_zeros


def test_statistics_and_duplicates_of_a_folder_with_empty_documents_and_copies(tmp_path, corpus, bpe_dir, bpe,
                                                                              capsys):
    folder, texts = corpus
    props = dict(input_pattern=str(folder), bpe_dir=bpe_dir, split_method="hash", val_fraction=0.3)
    examples, stats = run_executor(tmp_path / "out", statistics=True, **props)
    assert "5 duplicate documents dropped" in capsys.readouterr().out
    assert prop(examples, "duplicate_documents") == stats.get_custom_property("duplicate_documents") == 5

    # the first of each text is kept (by file name, the corpus order): no text in both splits
    names = list(texts)
    kept = {i: texts[name] for i, name in enumerate(names) if texts[name] and texts[name] not in
            [texts[n] for n in names[:i]]}
    docs = {split: chunks_by_doc(examples, split) for split in sources.SPLITS}
    assert set(docs["train"]) | set(docs["val"]) == set(kept) and not set(docs["train"]) & set(docs["val"])
    for split in sources.SPLITS:
        assert all(docs[split][i] == bpe.encode(kept[i]) + [EOT] for i in docs[split])

    counted = collections.Counter()
    for split in sources.SPLITS:
        dataset, features = _features(stats, split)
        texts_here = [kept[i] for i in docs[split]]
        counted.update(rows=dataset.num_examples, empty=_ones(features[statistics.EMPTY]),
                       spaces=_ones(features[statistics.WHITESPACE_ONLY]))
        tokens = features[statistics.NUM_TOKENS].num_stats
        assert round(tokens.mean * dataset.num_examples) == prop(examples, f"num_tokens_{split}")
        chars = {b.label: b.sample_count for b in features[statistics.CHAR].string_stats.rank_histogram.buckets}
        assert chars == collections.Counter("".join(texts_here))  # every character and its frequency
        expected = collections.Counter(t for text in texts_here for t in bpe.encode(text) + [EOT])
        label = statistics.token_label(bpe.encoding.decode_single_token_bytes)
        token_stats = features[statistics.TOKEN].string_stats
        assert {b.label: b.sample_count for b in token_stats.rank_histogram.buckets} == \
            {label(t): n for t, n in expected.items()}
        assert token_stats.top_values[0].value == label(expected.most_common(1)[0][0])
    # the empty files and the whitespace-only one are rows (the empty ones are not tokenized)
    assert counted == {"rows": len(names) - 5, "empty": 2, "spaces": 1}

    # what TFDV's tools read: a schema inferred from them, and the page visualize_statistics shows
    train = stats_artifact_utils.load_statistics(stats, "train").proto()
    schema = tfdv.infer_schema(train)
    assert {f.name for f in schema.feature} == {*statistics.DOCUMENT_FEATURES, statistics.CHAR, statistics.TOKEN}
    page = tfdv.get_statistics_html(train, stats_artifact_utils.load_statistics(stats, "val").proto())
    shown = base64.b64decode(re.search(r'proto-input="([A-Za-z0-9+/=]+)"', page).group(1))  # Facets Overview's input
    assert b"num_characters" in shown and b"' the'" in shown

    # dedup off: every copy is a document of its own
    again = run_executor(tmp_path / "again", dedup=False, **props)
    assert prop(again, "duplicate_documents") == 0 and prop(again, "num_documents") == len(kept) + 5


def test_counts_are_exact_below_and_above_the_pending_limit_and_past_the_dense_limit():
    import numpy as np

    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 50_257, size=n) for n in (1, 7, 300, 5_000)]  # a few short documents
    pieces += [np.array([0x1F600, 65, 0x10FFFF])]  # beyond DENSE_LIMIT: an emoji, the last code point
    expected = collections.Counter(v for p in pieces for v in p.tolist())
    few = statistics.Counts()
    for piece in pieces:
        few.add(piece)
    assert few.to_dict() == expected and not len(few.array)  # sorted once, never made dense
    many = statistics.Counts()
    for piece in pieces * 20:  # 106,000 values: past PENDING_LIMIT, counted densely
        many.add(piece)
    values, counts = many.sparse()
    assert len(many.array) and values.tolist() == sorted(expected) and values.dtype == counts.dtype == np.int64
    assert dict(zip(values.tolist(), counts.tolist())) == {v: 20 * c for v, c in expected.items()}
    merged = statistics.Counts()  # MergeStats: a work item's sparse counts added to another's
    merged.add_sparse(few.sparse())
    merged.add_sparse(many.sparse())
    assert merged.to_dict() == {v: 21 * c for v, c in expected.items()}
