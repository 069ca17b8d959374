"""Executor of TokenizeText: plans the work, runs the Beam pipeline, publishes shards and counts."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components.artifact_layout import optional_artifact
from components.beam_executor import NoWorkerPackage
from components.tokenize_text import beam_ops, encoding, sources
from components.tokenize_text.settings import TokenizeTextSettings
from core import files, shards
from core.console import counted
from core.errors import UsageError, writing
from model.tokenizer import BPE_DIR_ENV, GPT2Tokenizer
from training.config import TOKENIZER_FILE

EXAMPLES_KEY = "examples"
STATISTICS_KEY = "statistics"
SETTINGS_KEY = "settings"
FINGERPRINT_KEY = sources.FINGERPRINT_KEY
STAGING_DIR = "_staging"


def resolve_config(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """The component's settings (one JSON execution property, checked) as the dict the workers get,
    with the defaults that depend on the machine applied."""
    cfg = dataclasses.asdict(TokenizeTextSettings.from_json(exec_properties[SETTINGS_KEY]))
    cfg["chunk_size"] = cfg["chunk_size"] or shards.DEFAULT_CHUNK_SIZE
    cfg["bpe_dir"] = cfg["bpe_dir"] or os.environ.get(BPE_DIR_ENV) or None
    return cfg


def plan(cfg: Dict[str, Any]) -> (List[dict], dict):
    """Work items and source facts; raises, naming the input, when the input is missing or empty."""
    items, info = sources.plan(cfg)
    cfg["val_fraction"], cfg["split_method"] = info["val_fraction"], info["split_method"]
    if cfg["append_eot"] is None:
        # nanoGPT appends <|endoftext|> to each OpenWebText document but encodes Shakespeare's
        # single text with encode_ordinary alone; characters have no end-of-text token.
        cfg["append_eot"] = cfg["tokenizer"] == beam_ops.GPT2 and info.get("num_files") != 1
    cfg["append_eot"] = bool(cfg["append_eot"])
    if cfg["append_eot"] and cfg["tokenizer"] != beam_ops.GPT2:
        raise UsageError("append_eot needs tokenizer='gpt2' (the character vocabulary has no end-of-text)")
    return items, info


def check_counts(stats: Dict[str, Any], source: str) -> None:
    if stats["num_documents"] == 0:
        raise UsageError(f"{source!r}: no non-empty documents ({stats['num_skipped_documents']} skipped: "
                         f"{stats['skipped_empty']} empty, {stats['skipped_missing_text']} without text)")
    for split in sources.SPLITS:
        if stats[f"num_tokens_{split}"] == 0:
            share = "a larger" if split == sources.VAL else "a smaller"
            raise UsageError(f"{source!r}: the {split} split is empty ({stats['num_documents']} documents): "
                             f"--split_method=head_tail splits each document, or set {share} --val_fraction")


def set_properties(examples: types.Artifact, cfg: Dict[str, Any], info: dict, stats: Dict[str, Any]) -> None:
    """Counts and the tokenizer, as custom properties that ML Metadata shows and the trainer reads."""
    for key in beam_ops.COUNTERS:
        examples.set_int_custom_property(key, int(stats[key]))
    examples.set_string_custom_property("tokenizer", cfg["tokenizer"])
    examples.set_string_custom_property("source", info["source"])
    examples.set_string_custom_property("split_method", info["split_method"])
    examples.set_float_custom_property("val_fraction", float(cfg["val_fraction"]))
    examples.set_int_custom_property("split_seed", cfg["split_seed"])
    examples.set_int_custom_property("chunk_size", cfg["chunk_size"])
    examples.set_int_custom_property("append_eot", int(cfg["append_eot"]))
    examples.set_string_custom_property("unicode_policy", "utf-8, invalid bytes replaced by U+FFFD")
    if cfg["tokenizer"] == beam_ops.GPT2:
        examples.set_string_custom_property("record_feature", shards.TOKENS)
        examples.set_int_custom_property("vocab_size", GPT2Tokenizer.vocab_size)
        examples.set_int_custom_property("eot_token", GPT2Tokenizer.eot_token)
    else:
        # Records hold text; the vocabulary is Transform's (components/char_transform.py). The
        # number of distinct characters seen is what that vocabulary holds when Transform analyzes
        # both splits.
        examples.set_string_custom_property("record_feature", encoding.TEXT)
        examples.set_int_custom_property("vocab_size", len(stats["chars"]))


def text_summary(stats: Dict[str, Any], seconds: float) -> str:
    """The line TokenizeText prints at its end: what it read, in how long, and what it dropped, replaced
    or normalised."""
    refused, skipped = stats["refused_documents"], stats["num_skipped_documents"]
    return (f"TokenizeText: {counted(stats['num_documents'], 'document')}, "
            f"{stats['num_tokens_train']:,} train and {stats['num_tokens_val']:,} val tokens in {seconds:.1f} s; "
            f"{counted(stats['duplicate_documents'], 'duplicate document')} dropped, "
            f"{counted(stats['invalid_utf8_documents'], 'document')} with invalid UTF-8 replaced by U+FFFD, "
            + (f"{counted(refused, 'document')} not UTF-8 text tokenized (accept_invalid_text), " if refused else "")
            + f"{counted(stats['bom_dropped_documents'], 'byte-order mark')} dropped, "
              f"{counted(stats['crlf_normalized_lines'], 'CRLF line end')} made LF, "
              f"{counted(skipped, 'document')} skipped"
            + (f" ({stats['skipped_missing_text']} without text, {stats['skipped_empty']} empty)" if skipped else ""))


def check_text(stats: Dict[str, Any], cfg: Dict[str, Any]) -> None:
    """Refuse, naming the first, documents the text policy found not to be text while they were read."""
    if stats[beam_ops.REFUSED] is not None and not cfg["accept_invalid_text"]:
        _, name, problem = stats[beam_ops.REFUSED]
        raise sources.not_text(name, problem, stats["refused_documents"])


def set_statistics_properties(statistics: types.Artifact, cfg: Dict[str, Any], stats: Dict[str, Any]) -> None:
    statistics.split_names = artifact_utils.encode_split_names(list(sources.SPLITS))
    for key in ("num_documents", "duplicate_documents", "num_skipped_documents", "refused_documents"):
        statistics.set_int_custom_property(key, int(stats[key]))
    statistics.set_string_custom_property("tokenizer", cfg["tokenizer"])


class Executor(NoWorkerPackage, base_beam_executor.BaseBeamExecutor):
    """Tokenizes a corpus into `core.shards` records (or text records for characters).

    Output is written under a staging directory and moved into `Split-train`/`Split-val` only after
    the pipeline succeeded and the counts were checked; on any failure the staging directory is
    removed, so a failed run leaves no shards that look complete.
    """

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        statistics = optional_artifact(output_dict, STATISTICS_KEY)  # present when the settings ask for it
        started = time.time()
        cfg = resolve_config(exec_properties)
        items, info = plan(cfg)  # a missing or empty input is named first
        if cfg["tokenizer"] == beam_ops.GPT2:  # no BPE files (offline, no bpe_dir): one line, before Beam starts
            beam_ops.gpt2_tokenizer(cfg["bpe_dir"])
        what = [f"{info[k]:,} {k[4:] if info[k] != 1 else k[4:-1]}" for k in ("num_files", "num_rows")
                if k in info] or ["streamed"]
        if "note" in info:
            what.append(info["note"])
        logging.info("TokenizeText: %s (%s); %s", info["source"], ", ".join(what), sources.describe_split(info))

        staging = os.path.join(examples.uri, f"{STAGING_DIR}-{uuid.uuid4().hex[:8]}")
        # duplicates are looked for in a corpus of several documents (one text file has none)
        dedup = cfg["dedup"] and (sources.num_documents(info) or 2) > 1
        published = []
        try:
            with writing(f"the shards of {examples.uri}"):
                with self._make_beam_pipeline() as pipeline:
                    beam_ops.build_pipeline(pipeline, items, cfg, staging, dedup=dedup,
                                            statistics_on=statistics is not None)
            with fileio.open(os.path.join(staging, beam_ops.STATS_FILE)) as f:
                stats = json.loads(f.read())
            check_text(stats, cfg)
            check_counts(stats, info["source"])
            beam_ops.name_shards(staging)
            for key, count in info.pop("text_counts", {}).items():  # a file split into head and tail
                stats[key] += count
            moves = [(shards.split_dir(staging, split), shards.split_dir(examples.uri, split))
                     for split in sources.SPLITS]
            if statistics is not None:
                fileio.makedirs(statistics.uri)  # (Kubeflow's launcher makes no output directories)
                moves += [(shards.split_dir(os.path.join(staging, beam_ops.STATISTICS_DIR), split),
                           shards.split_dir(statistics.uri, split)) for split in sources.SPLITS]
            for source, destination in moves:
                published.append(destination)
                fileio.rename(source, destination)
            if cfg["tokenizer"] == GPT2Tokenizer.kind:  # ids to train on as they are (`training.train --data_dir`)
                files.write_json(os.path.join(examples.uri, TOKENIZER_FILE), {"kind": GPT2Tokenizer.kind})
            fileio.rename(os.path.join(staging, beam_ops.STATS_FILE),
                          os.path.join(examples.uri, beam_ops.STATS_FILE))
        except BaseException:
            for path in published:  # one split without the other, or without its counts: not an output
                if fileio.exists(path):
                    fileio.rmtree(path)
            raise
        finally:
            if fileio.exists(staging):
                fileio.rmtree(staging)

        examples.split_names = artifact_utils.encode_split_names(list(sources.SPLITS))
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        set_properties(examples, cfg, info, stats)
        if exec_properties.get(FINGERPRINT_KEY):
            examples.set_string_custom_property(FINGERPRINT_KEY, exec_properties[FINGERPRINT_KEY])
        if statistics is not None:
            set_statistics_properties(statistics, cfg, stats)
        examples.set_string_custom_property(shards.SHARD_BYTES, json.dumps(shards.shard_sizes(examples.uri)))
        examples.set_string_custom_property(shards.SHARD_SHA256, json.dumps(shards.shard_digests(examples.uri)))
        print(text_summary(stats, time.time() - started), flush=True)
