"""The data checks' settings: the validation part of the run's configuration (pipeline/configs.py),
which decides the schema's source and whether anomalies stop the run (docs/data_validation.md).
Imports nothing heavy."""

from __future__ import annotations

import dataclasses
from typing import Optional

from core.settings import SettingError, Settings, check, setting


@dataclasses.dataclass
class ValidationConfig(Settings):
    schema_file: Optional[str] = setting(None, "a curated schema (schema.pbtxt, e.g. a copy of SchemaGen's) to check "
                                               "the data against, instead of the one SchemaGen infers from it",
                                         path=True)
    accept_anomalies: bool = setting(False, "train on data with anomalies (they are printed) instead of stopping "
                                            "before the Trainer")
    skip_validation: bool = setting(False, "no schema and no checks of the data (its statistics are still recorded)")

    def __post_init__(self):
        check(self)


def check_schema_file(path: str) -> None:
    """A curated schema that cannot be read as a TFDV schema: one line naming it (a remote one is
    read by the pipeline)."""
    if "://" in path:
        return
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        with open(path, encoding="utf-8") as f:
            text_format.Parse(f.read(), schema_pb2.Schema())
    except OSError as e:
        raise SettingError(f"--schema_file={path}: {e.strerror or e}") from None
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise SettingError(f"--schema_file={path}: not a schema in text format ({' '.join(str(e).split())})") from None
