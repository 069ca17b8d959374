"""TokenizeText: a Beam-based TFX component that turns a text corpus into token shards.

Sources (exactly one):
  input_pattern   a text file path or glob (local, gs://, ...). Each file is one document. A single
                  file is split by characters, the first 90% train and the last 10% val, as
                  nanoGPT's shakespeare prepare scripts do; several files are split by hash.
  dataset_name    a Hugging Face hub dataset (e.g. "openwebtext", with dataset_config,
                  dataset_split and streaming=True for large corpora), or a local path that
                  `datasets` loads: a .parquet/.json/.jsonl/.arrow/.txt/.csv file, a directory saved
                  by `save_to_disk`, or a dataset directory. Each row's `text_column` is a document.

Tokenization: tokenizer="gpt2" (tiktoken's GPT-2 BPE, built once per Beam worker; offline from
bpe_dir or $NANOGPT_TFX_BPE_DIR) writes `model.shards` records (`tokens`, `doc`, `pos`), with the
end-of-text token 50256 appended to each document of a document corpus (append_eot; by default on
for hashed corpora, off for a single text file, as in nanoGPT). tokenizer="char" writes the same
records with the document's text in a `text` feature instead of `tokens`; the standard TFX
Transform component with components/char_transform.py as module file builds the vocabulary and
turns them into `tokens`.

Splits: a document corpus puts a document in val when a keyed hash of its index and split_seed falls
below val_fraction (default 0.0005, nanoGPT's OpenWebText hold-out): the same on every run and runner.

Output: one Examples artifact, split_names ["train", "val"], GZIP TFRecord shards (zlib level 1) under
Split-train/ and Split-val/ (num_shards per split; 0, the default, lets the runner decide, one file
per bundle, while a fixed count makes Beam shuffle the records to the shards; chunk_size tokens or
characters per record, default model.shards.DEFAULT_CHUNK_SIZE). Custom properties: num_documents[_train|_val], num_tokens_train/val,
num_records_train/val, num_skipped_documents, skipped_empty, skipped_missing_text,
invalid_utf8_documents, tokenizer, vocab_size, eot_token (gpt2), record_feature, append_eot,
source, split_method, val_fraction, split_seed, chunk_size, unicode_policy.

Bad input: a missing path or dataset, an empty corpus, or one whose documents are all empty fails the
execution with an error naming the input, and leaves no Split-* directories. Documents with empty text
are skipped and counted (skipped_empty; a missing dataset cell: skipped_missing_text).

Unicode policy: a text file that is not UTF-8 text (NUL bytes, a UTF-16/UTF-32 byte-order mark, more
than 1% invalid UTF-8 in its first 64 KiB) stops the execution with one line naming it, unless
accept_invalid_text; otherwise bytes that are not valid UTF-8 are decoded with errors="replace"
(U+FFFD for each invalid sequence) and the documents affected counted in invalid_utf8_documents. A
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


class TokenizeTextSpec(types.ComponentSpec):
    PARAMETERS = {
        "input_pattern": ExecutionParameter(type=str, optional=True),
        "dataset_name": ExecutionParameter(type=str, optional=True),
        "dataset_config": ExecutionParameter(type=str, optional=True),
        "dataset_split": ExecutionParameter(type=str, optional=True),
        "text_column": ExecutionParameter(type=str, optional=True),
        "streaming": ExecutionParameter(type=int, optional=True),
        "tokenizer": ExecutionParameter(type=str),
        "append_eot": ExecutionParameter(type=int, optional=True),  # -1 or absent: automatic
        "split_method": ExecutionParameter(type=str, optional=True),
        "val_fraction": ExecutionParameter(type=float, optional=True),
        "split_seed": ExecutionParameter(type=int, optional=True),
        "chunk_size": ExecutionParameter(type=int, optional=True),
        "num_shards": ExecutionParameter(type=int, optional=True),
        "max_piece_chars": ExecutionParameter(type=int, optional=True),
        "bpe_dir": ExecutionParameter(type=str, optional=True),
        "accept_invalid_text": ExecutionParameter(type=int, optional=True),
        "keep_crlf": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class TokenizeText(base_beam_component.BaseBeamComponent):
    """Text files or a Hugging Face dataset -> GPT-2 BPE token shards or character text records.

    See the module docstring for the parameters, properties and policies.
    """

    SPEC_CLASS = TokenizeTextSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, *, input_pattern: Optional[str] = None, dataset_name: Optional[str] = None,
                 dataset_config: Optional[str] = None, dataset_split: str = "train",
                 text_column: str = "text", streaming: bool = False, tokenizer: str = "gpt2",
                 append_eot: Optional[bool] = None, split_method: str = "auto",
                 val_fraction: Optional[float] = None, split_seed: int = 0, chunk_size: Optional[int] = None,
                 num_shards: int = 0, max_piece_chars: Optional[int] = None, bpe_dir: Optional[str] = None,
                 accept_invalid_text: bool = False, keep_crlf: bool = False):
        # Checked here too so that a wrong pipeline fails when it is built, not when it runs.
        executor.resolve_config({"input_pattern": input_pattern, "dataset_name": dataset_name,
                                 "tokenizer": tokenizer, "val_fraction": val_fraction})
        spec = TokenizeTextSpec(
            input_pattern=input_pattern, dataset_name=dataset_name, dataset_config=dataset_config,
            dataset_split=dataset_split, text_column=text_column, streaming=int(streaming),
            tokenizer=tokenizer, append_eot=-1 if append_eot is None else int(append_eot),
            split_method=split_method, val_fraction=val_fraction, split_seed=split_seed,
            chunk_size=chunk_size, num_shards=num_shards, max_piece_chars=max_piece_chars,
            bpe_dir=bpe_dir, accept_invalid_text=int(accept_invalid_text), keep_crlf=int(keep_crlf),
            examples=types.Channel(type=standard_artifacts.Examples))
        super().__init__(spec=spec)
