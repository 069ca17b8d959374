"""A compiled spec's first task: the fingerprint of TokenizeText's corpus as it is where and when the
spec runs (sources.input_fingerprint: its files' paths, sizes and update times; local files' bytes), which the
spec hands to TokenizeText as its parameter input_fingerprint.

Kubeflow's cache keys a task by its parameters and inputs, and a spec is compiled before, and away
from, the data it reads: without this task a corpus edited or replaced at the same path took the
last run's shards, and its model, from the cache. With it, an unchanged corpus is still taken from
the cache, and a changed one is tokenized again, and everything after it runs again, as in
`runner.py run` (the role of TFX's own ExampleGen driver). The task itself is never cached
(compile.py with_data_fingerprint). Its output is "" for a hub dataset (pinned by its revision).

    python -m orchestration.kubeflow.data_fingerprint SETTINGS_JSON OUTPUT_FILE  (USAGE)
"""

from __future__ import annotations

import sys

from components.tokenize_text.sources import FINGERPRINT_KEY as PARAMETER  # TokenizeText's parameter

TASK = "DataFingerprint"
SETTINGS = "settings"  # its input: TokenizeText's parameter of the same name, TokenizeTextSettings as JSON
USAGE = "python -m orchestration.kubeflow.data_fingerprint SETTINGS_JSON OUTPUT_FILE"


def container_line() -> (list, list):
    """(command, args) of the task's container in a spec, with Kubeflow's placeholders."""
    return (["python", "-m", "orchestration.kubeflow.data_fingerprint"],
            [f"{{{{$.inputs.parameters['{SETTINGS}']}}}}", f"{{{{$.outputs.parameters['{PARAMETER}'].output_file}}}}"])


def main(argv=None) -> None:
    from core import console, errors

    console.quiet_imports()  # google-api-core's note on Python 3.10, which Beam's imports print
    with errors.reported("data_fingerprint"):
        import dataclasses

        argv = sys.argv[1:] if argv is None else argv
        if len(argv) != 2:
            raise errors.UsageError(f"usage: {USAGE}")
        settings_json, output_file = argv

        from components.tokenize_text import sources
        from components.tokenize_text.settings import TokenizeTextSettings
        from core.files import write_file

        cfg = dataclasses.asdict(TokenizeTextSettings.from_json(settings_json))
        fingerprint = sources.input_fingerprint(cfg) or ""
        print(f"{PARAMETER}: {fingerprint or 'none (a hub dataset: its revision pins it)'}", flush=True)
        write_file(output_file, fingerprint)  # where Kubeflow's launcher reads the output parameter


if __name__ == "__main__":
    main()
