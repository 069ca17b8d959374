"""TokenizeText's parameters: one typed dataclass, which the component stores as one JSON execution
property, the executor reads back, and the pipeline's settings include (pipeline/configs.py), so that
every parameter is a `runner.py run --key=value` setting too. Imports nothing heavy."""

from __future__ import annotations

import dataclasses
from typing import Optional

from core.settings import SettingError, Settings, check, setting
from model.tokenizer import TOKENIZERS

HEAD_TAIL, HASH, AUTO = "head_tail", "hash", "auto"
SPLIT_METHODS = (AUTO, HEAD_TAIL, HASH)


@dataclasses.dataclass
class TokenizeTextSettings(Settings):
    # the source: text files or a Hugging Face dataset (exactly one)
    input_pattern: Optional[str] = setting(None, "text files: a file, a folder or a glob (local, gs://, ...); "
                                                 "each file is a document", path=True)
    dataset_name: Optional[str] = setting(None, "a Hugging Face dataset: a hub name, or a local directory or "
                                                ".jsonl/.json/.parquet/.csv/.arrow/.txt file", path=True)
    dataset_config: Optional[str] = setting(None, "the dataset's configuration name")
    dataset_split: str = setting("train", "the dataset's split to read (this component makes train and val)")
    text_column: str = setting("text", "the dataset column that holds each document's text")
    streaming: bool = setting(False, "stream the dataset from the hub instead of downloading it")
    dataset_revision: Optional[str] = setting(None, "the hub dataset's revision (a commit, tag or branch), so that "
                                                    "every run reads the same data")
    trust_remote_code: bool = setting(False, "let a dataset that loads itself with a script of its own run it (read "
                                             "the script first)")
    tokenizer: str = setting("gpt2", "GPT-2 BPE tokens, or character records for Transform's vocabulary",
                             choices=TOKENIZERS)
    bpe_dir: Optional[str] = setting(None, "a directory with GPT-2's vocab.bpe and encoder.json, for offline BPE "
                                           "(else $NANOGPT_TFX_BPE_DIR or tiktoken's download)", path=True)
    # splits and records
    split_method: str = setting(AUTO, "head_tail: each document's last val_fraction of characters is val (one "
                                      "file: nanoGPT's 90/10); hash: whole documents by a keyed hash; auto: hash "
                                      "when val can expect >= 20 documents, else head_tail", choices=SPLIT_METHODS)
    val_fraction: Optional[float] = setting(None, "the share of val (None: 0.1 for head_tail, 0.0005 for hash, "
                                                  "nanoGPT's)", above=0, below=1)
    split_seed: int = setting(0, "the key of the hash split")
    append_eot: Optional[bool] = setting(None, "end each document with <|endoftext|> (None: with GPT-2 BPE, for "
                                               "a corpus of documents, not one text file, as nanoGPT)")
    chunk_size: int = setting(0, "tokens (characters) per record (0: core.shards' default, 8192)", minimum=0)
    num_shards: int = setting(0, "files per split (0: one per Beam bundle, written by the bundle itself; N: "
                                 "Beam's file sink shuffles the records into N files)", minimum=0)
    # the input-text policy (components/tokenize_text/encoding.py)
    accept_invalid_text: bool = setting(False, "tokenize text files that are not UTF-8 text (NUL bytes, UTF-16, "
                                               "many invalid bytes), invalid bytes replaced")
    keep_crlf: bool = setting(False, "keep CRLF line ends (default: made LF)")
    max_piece_chars: int = setting(1 << 20, "GPT-2 BPE encodes a document in pieces of about this many "
                                            "characters (memory)", minimum=1)
    # what is checked of the data (docs/data_validation.md)
    dedup: bool = setting(True, "drop documents whose text (after the BOM/CRLF policy) equals an earlier one's, "
                                "before the split")
    statistics: bool = setting(True, "describe the documents with TFDV statistics (an ExampleStatistics artifact: "
                                     "lengths, empty ones, the character and token distributions), which "
                                     "validation checks")

    def __post_init__(self):
        check(self)
        if bool(self.input_pattern) == bool(self.dataset_name):
            raise SettingError("give exactly one of --data / --input_pattern (text files) and --dataset_name "
                               f"(a Hugging Face dataset), not {'both' if self.input_pattern else 'neither'}")
        for name in ("dataset_revision", "trust_remote_code"):
            if getattr(self, name) and not self.dataset_name:
                raise SettingError(f"--{name}={getattr(self, name)}: goes with --dataset_name (a Hugging Face "
                                   f"dataset), not with text files")
        if self.append_eot and self.tokenizer != "gpt2":
            raise SettingError("--append_eot=True needs --tokenizer=gpt2 (characters have no end-of-text token)")
