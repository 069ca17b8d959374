"""gs:// data on a machine without Google Cloud credentials: one line saying it is read anonymously, and
Beam told so, instead of Beam's four retries of the lookup (~26 s, a traceback each in the log)."""

import logging

from apache_beam.internal.gcp import auth
from apache_beam.options.pipeline_options import PipelineOptions
from google.auth.compute_engine import _metadata

from components.tokenize_text.sources import text_files


def test_without_credentials_beam_reads_gs_anonymously_at_once(tmp_path, monkeypatch, caplog):
    # a machine without credentials: no key file, an empty gcloud configuration, not on Compute Engine
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)
    monkeypatch.setattr(text_files, "_credentials_found", None)
    monkeypatch.setattr(auth._Credentials, "_credentials_init", False)  # restored after: Beam's state as new
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    caplog.set_level(logging.INFO)

    assert text_files.gcs_credentials_found() is False
    assert text_files.gcs_credentials_found() is False  # looked up once
    said = [r.getMessage() for r in caplog.records if "Google Cloud credentials" in r.getMessage()]
    assert said == [f"{text_files.NO_CREDENTIALS}: Your default credentials were not found"]

    # what Beam's GCS client asks before its first read: answered, not looked up again with retries
    assert auth.get_service_credentials(PipelineOptions([])) is None
    assert not [r for r in caplog.records if r.name.startswith("apache_beam")], [r.getMessage() for r in caplog.records]
