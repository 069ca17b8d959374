"""TokenizeText: a Beam-based TFX component that turns a text corpus into token shards, and describes
its documents with TFDV statistics.

Parameters: the fields of TokenizeTextSettings (settings.py), stored as one JSON execution property,
and input_fingerprint: a digest of the corpus' files (local ones' paths and bytes; gs:// objects' paths,
sizes and update times) when the pipeline is built (in a compiled spec, when it runs: its DataFingerprint task), None
for a hub dataset. TFX reuses an execution whose parameters and inputs are those of an earlier one:
with the digest among them, a corpus edited in place is tokenized again instead of taken from the cache.

Sources (exactly one):
  input_pattern   a text file, a folder of them or a glob (local, gs://, ...). Each file is one
                  document.
  dataset_name    a Hugging Face hub dataset (e.g. "openwebtext", with dataset_config,
                  dataset_split and streaming=True for large corpora), or a local path that
                  `datasets` loads: a .parquet/.json/.jsonl/.arrow/.txt/.csv file, a directory saved
                  by `save_to_disk`, or a dataset directory. Each row's `text_column` is a document.
                  dataset_revision pins a hub dataset to a commit, tag or branch; a dataset that loads
                  itself with a script of its own is refused unless trust_remote_code=True (printed).

Tokenization: tokenizer="gpt2" (tiktoken's GPT-2 BPE, built once per Beam worker; offline from
bpe_dir or $NANOGPT_TFX_BPE_DIR) writes `core.shards` records (`tokens`, `doc`, `pos`), with the
end-of-text token 50256 appended to each document of a document corpus (append_eot; by default on
for document corpora, off for a single text file, as in nanoGPT). tokenizer="char" writes the same
records with the document's text in a `text` feature instead of `tokens`; the standard TFX
Transform component with components/char_transform.py as module file builds the vocabulary and
turns them into `tokens`.

Splits (split_method): head_tail puts the last val_fraction (default 0.1) of each document's
characters in val, as nanoGPT's shakespeare prepare scripts do with their one text; hash puts a whole
document in val when a keyed hash of its index and split_seed falls below val_fraction (default
0.0005, nanoGPT's OpenWebText hold-out). auto (the default) hashes only when val can expect at least
20 documents (sources.MIN_HASHED_VAL_DOCUMENTS; a streamed dataset: always), so any corpus with text
gets a non-empty val split. Both are the same on every run and runner.

Outputs: one Examples artifact, split_names ["train", "val"], GZIP TFRecord shards (ISA-L level 2) under
Split-train/ and Split-val/ (num_shards per split; 0, the default, lets the runner decide, one file
per bundle, while a fixed count makes Beam shuffle the records to the shards; chunk_size tokens or
characters per record, default core.shards.DEFAULT_CHUNK_SIZE). Custom properties:
num_documents[_train|_val], num_tokens_train/val, num_records_train/val, num_skipped_documents,
skipped_empty, skipped_missing_text, duplicate_documents, invalid_utf8_documents, refused_documents,
tokenizer, vocab_size, eot_token (gpt2), record_feature, append_eot, source, input_fingerprint, split_method,
val_fraction, split_seed, chunk_size, unicode_policy; shard_bytes and shard_sha256 (each shard file's size and
SHA-256, with which a run tells shards damaged since they were written);
and, unless statistics=False, one ExampleStatistics artifact (TFDV's DatasetFeatureStatisticsList of the
documents per split, Split-<split>/FeatureStats.pb as TFX's StatisticsGen writes it; statistics.py
lists its features) with the properties num_documents, duplicate_documents, num_skipped_documents,
refused_documents and tokenizer.

Duplicates (dedup, on by default): a document whose text, after the BOM/CRLF policy, equals an
earlier one's is dropped before the split (found by a hash of the text in a first, reading pass) and
counted (duplicate_documents); so no text is in both splits.

Bad input: a missing path or dataset, an empty corpus, or one whose documents are all empty fails the
execution with an error naming the input, and leaves no Split-* directories. Documents with empty text
are skipped and counted (skipped_empty; a missing dataset cell: skipped_missing_text).

Unicode policy: a document that is not UTF-8 text (a UTF-16/UTF-32 byte-order mark, a NUL byte anywhere,
more than 1% of any 64 KiB of it in invalid UTF-8 sequences or control characters; a file's first 64
KiB are checked before any work, the whole of every document as it is read) stops the execution with
one line naming it, unless accept_invalid_text (refused_documents counts them); otherwise bytes that
are not valid UTF-8 are decoded with errors="replace" (U+FFFD for each invalid sequence) and the
documents affected counted in invalid_utf8_documents. A
UTF-8 byte-order mark is dropped (bom_dropped_documents); CRLF line ends become LF unless keep_crlf
(crlf_normalized_lines). The counts are printed at the end of the execution.

Memory: documents stream in blocks; GPT-2 BPE encodes them in pieces of about max_piece_chars
characters cut only where the encoding is unchanged (before whitespace that follows a non-whitespace
character), so a single 100 MB document needs a few MB.
"""

from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.tokenize_text import executor
from components.tokenize_text.settings import TokenizeTextSettings


class TokenizeTextSpec(types.ComponentSpec):
    # All parameters in one: TokenizeTextSettings as JSON (components/tokenize_text/settings.py).
    PARAMETERS = {executor.SETTINGS_KEY: ExecutionParameter(type=str),
                  # the corpus' files as the pipeline is built or the spec runs (sources.input_fingerprint):
                  # an edited corpus changes the parameters, so that the cache does not give the old shards
                  executor.FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True)}
    INPUTS = {}
    OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
               # absent with statistics=False
               executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True)}


class TokenizeText(base_beam_component.BaseBeamComponent):
    """Text files or a Hugging Face dataset -> GPT-2 BPE token shards or character text records.

    TokenizeText(settings) or TokenizeText(**fields of TokenizeTextSettings); see the module
    docstring for the parameters, properties and policies. input_fingerprint: what
    sources.input_fingerprint says of the corpus now (the pipeline passes it), recorded on the Examples.
    """

    SPEC_CLASS = TokenizeTextSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, settings: Optional[TokenizeTextSettings] = None, input_fingerprint: Optional[str] = None,
                 **parameters):
        # Checked here (TokenizeTextSettings checks itself) so that a wrong pipeline fails when it is
        # built, not when it runs.
        settings = settings or TokenizeTextSettings(**parameters)
        statistics = types.Channel(type=standard_artifacts.ExampleStatistics) if settings.statistics else None
        spec = TokenizeTextSpec(settings=settings.to_json(), input_fingerprint=input_fingerprint,
                                examples=types.Channel(type=standard_artifacts.Examples), statistics=statistics)
        super().__init__(spec=spec)
