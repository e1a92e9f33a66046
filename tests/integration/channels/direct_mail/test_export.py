"""The direct-mail export against a real store: file:// in tmp_path and s3:// on moto.

The run is registered, evaluated and targeted as in a real DAG run; the files are read back
with pandas and compared with the profiles the test created and with the ledger.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest

from campaign_orchestrator.channels.direct_mail import export as export_module
from campaign_orchestrator.channels.direct_mail.export import (
    ExportConfigError,
    exclude_withdrawn,
    export_direct_mail,
    output_path,
    safe,
)
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.paths import ProjectPaths
from campaign_orchestrator.run.audience import evaluate_audience
from campaign_orchestrator.run.runs import register_run
from campaign_orchestrator.run.targeting import target_step
from campaign_orchestrator.store.connect import store_connection
from tests.fixtures.aws import MotoEndpoint
from tests.fixtures.store import add_profiles

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-03-01T09:00:00+00:00"
COLUMNS = ["profile_id", "entity_key", "address_line1", "address_line2", "postal_code", "city", "region",
           "country_code", "first_name", "last_name", "locale"]
INCOMPLETE = {3: {"postal_code": None}, 13: {"city": "  "}, 23: {"address_line1": ""}, 33: {"country_code": None}}
OPTED_OUT = {10, 20, 30, 40, 50}


def profile(i: int) -> dict:
    row = {
        "profile_id": i,
        "first_name": f'Zoë "{i}", Jr.' if i % 7 == 0 else f"First{i}",
        "last_name": f"O'Name\n{i}" if i % 11 == 0 else f"Last{i}",
        "locale": "fr" if i % 2 else "en",
        "address_line1": f"{i} Rue de la Paix",
        "address_line2": f"Apt {i}" if i % 3 == 0 else None,
        "postal_code": f"750{i:02d}",
        "city": "Paris",
        "region": "Île-de-France" if i % 4 else None,
        "country_code": "FR",
        "consent": {"direct_mail": "opted_out" if i in OPTED_OUT else "opted_in"},
    }
    row.update(INCOMPLETE.get(i, {}))
    return row


PROFILES = {i: profile(i) for i in range(1, 51)}
SENDABLE = [i for i in PROFILES if i not in INCOMPLETE and i not in OPTED_OUT]


def expected_rows(ids: list[int]) -> list[dict]:
    return [{c: ("" if c == "entity_key" else PROFILES[i].get(c)) for c in COLUMNS} for i in ids]


def make_config(destination: str, **step) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "id": "postcards",
            "schedule": "manual",
            "valid": {"start": "2026-01-01"},
            "audience": {"sql": "audiences/all.sql"},
            "steps": [
                {"id": "letter", "channel": "direct_mail", "destination": destination,
                 "formats": ["csv", "parquet"], "fields": ["first_name", "last_name", "locale", "city"], **step}
            ],
        }
    )


class Run:
    def __init__(self, store, tmp_path: Path, destination: str, profiles: list[dict] | None = None, **step) -> None:
        paths = ProjectPaths(tmp_path / "project")
        (paths.sql / "audiences").mkdir(parents=True)
        (paths.sql / "audiences" / "all.sql").write_text("SELECT profile_id FROM crm.profile")
        add_profiles(store, list(PROFILES.values()) if profiles is None else profiles)
        self.store = store
        self.config = make_config(destination, **step)
        self.step = self.config.steps[0]
        self.run_key = register_run(store, self.config.id, RUN_ID, None, {})
        evaluate_audience(store, self.run_key, paths.sql / self.config.audience.sql, {}, None)
        self.targeting = target_step(store, self.run_key, self.config, self.step)

    def export(self) -> dict:
        return export_direct_mail(self.store, self.run_key, self.config.id, RUN_ID, self.step, store_connection)

    def ledger(self) -> dict[int, tuple]:
        return {
            row[0]: row[1:]
            for row in self.store.execute(
                """
                SELECT profile_id, status, reason, provider_message_id, sent_at, attempts, seq
                FROM campaign.message WHERE run_key = %s AND step_id = %s ORDER BY profile_id
                """,
                (self.run_key, self.step.id),
            )
        }


def local(url: str) -> Path:
    assert url.startswith("file://")
    return Path(urlsplit(url).path)


def records(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def test_extract_matches_the_ledger_and_marks_it_sent(store, tmp_path: Path) -> None:
    run = Run(store, tmp_path, f"file://{tmp_path}/out")
    # Targeting already kept incomplete addresses and opted-out profiles out of the extract.
    assert run.targeting.sendable == len(SENDABLE) == 41
    assert run.targeting.excluded == {"incomplete_postal_address": 4, "opted_out": 5}

    manifest = run.export()

    ledger = run.ledger()
    manifest_url = ledger[SENDABLE[0]][2]
    folder = tmp_path / "out" / "postcards" / safe(RUN_ID)
    assert manifest_url == f"file://{folder}/letter.manifest.json"
    assert json.loads(local(manifest_url).read_text()) == manifest
    assert {p.name for p in folder.iterdir()} == {"letter.csv", "letter.parquet", "letter.manifest.json"}
    assert manifest["campaign"] == "postcards" and manifest["dag_run_id"] == RUN_ID and manifest["step"] == "letter"
    assert manifest["rows"] == 41 and manifest["columns"] == COLUMNS
    for entry in manifest["files"]:
        data = local(entry["url"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()

    # The files hold the sendable rows in ledger (seq) order, with their current profile data.
    in_seq_order = [pid for pid, row in sorted(ledger.items(), key=lambda kv: kv[1][5] or 0) if row[5] is not None]
    assert in_seq_order == SENDABLE
    csv_frame = pd.read_csv(folder / "letter.csv", dtype=str, keep_default_na=False)
    assert list(csv_frame.columns) == COLUMNS
    assert csv_frame.to_dict("records") == [
        {c: "" if v is None else str(v) for c, v in row.items()} for row in expected_rows(SENDABLE)
    ]
    parquet_frame = pd.read_parquet(folder / "letter.parquet")
    assert str(parquet_frame["profile_id"].dtype) == "int64"
    assert records(parquet_frame) == expected_rows(SENDABLE)

    # Every exported row is sent, pointing at the manifest; the excluded rows are untouched.
    for pid, (status, reason, provider_id, sent_at, attempts, _seq) in ledger.items():
        if pid in SENDABLE:
            assert (status, reason, provider_id, attempts) == ("sent", None, manifest_url, 1) and sent_at
        else:
            assert status == "excluded" and provider_id is None and sent_at is None


def test_a_second_export_rewrites_identical_files_and_marks_nothing_again(store, tmp_path: Path) -> None:
    run = Run(store, tmp_path, f"file://{tmp_path}/out")
    first = run.export()
    ledger = run.ledger()
    contents = {f["format"]: local(f["url"]).read_bytes() for f in first["files"]}
    second = run.export()
    assert [(f["bytes"], f["sha256"]) for f in second["files"]] == [(f["bytes"], f["sha256"]) for f in first["files"]]
    assert {f["format"]: local(f["url"]).read_bytes() for f in second["files"]} == contents
    assert second["rows"] == first["rows"] == 41
    assert run.ledger() == ledger  # same sent_at, attempts still 1
    # No temporary file is left behind.
    assert sorted(p.name for p in local(first["files"][0]["url"]).parent.iterdir()) == [
        "letter.csv", "letter.manifest.json", "letter.parquet"
    ]


def test_consent_withdrawn_after_targeting_is_excluded_before_the_export(store, tmp_path: Path) -> None:
    run = Run(store, tmp_path, f"file://{tmp_path}/out", formats=["csv"])
    store.execute("UPDATE crm.consent SET status = 'opted_out', source = 'call_center' WHERE profile_id = 5")
    store.execute(
        """
        INSERT INTO crm.suppression (channel, address, reason, source)
        SELECT 'direct_mail', lower(concat_ws('|', btrim(p.address_line1), btrim(p.address_line2),
               btrim(p.postal_code), btrim(p.city), p.country_code)), 'manual', 'test'
        FROM crm.profile p WHERE profile_id = 8
        """
    )
    assert exclude_withdrawn(store, run.run_key, run.step) == {"consent_withdrawn": 1, "suppressed_during_run": 1}
    manifest = run.export()
    assert manifest["rows"] == 39
    ids = pd.read_csv(local(manifest["files"][0]["url"]), dtype=str)["profile_id"].astype(int).tolist()
    assert ids == [i for i in SENDABLE if i not in (5, 8)]
    ledger = run.ledger()
    assert ledger[5][:2] == ("excluded", "consent_withdrawn")
    assert ledger[8][:2] == ("excluded", "suppressed_during_run")
    # Once exported, a row stays sent: the letter has left.
    store.execute("UPDATE crm.consent SET status = 'opted_out', source = 'web' WHERE profile_id = 6")
    assert exclude_withdrawn(store, run.run_key, run.step) == {}
    assert run.ledger()[6][0] == "sent"


def test_a_crash_mid_export_leaves_no_file_and_the_rows_pending(store, tmp_path: Path, monkeypatch) -> None:
    run = Run(store, tmp_path, f"file://{tmp_path}/out")
    monkeypatch.setattr(export_module, "BATCH_ROWS", 10)
    calls = {"n": 0}
    original = export_module._Outputs.write

    def failing_write(self, rows):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("store connection lost")
        original(self, rows)

    monkeypatch.setattr(export_module._Outputs, "write", failing_write)
    with pytest.raises(ConnectionError):
        run.export()
    folder = tmp_path / "out" / "postcards" / safe(RUN_ID)
    assert list(folder.iterdir()) == []
    assert {row[0] for row in run.ledger().values() if row[5] is not None} == {"pending"}
    monkeypatch.setattr(export_module._Outputs, "write", original)
    assert run.export()["rows"] == 41  # the retry exports everything, in 10-row chunks
    assert {row[0] for row in run.ledger().values() if row[5] is not None} == {"sent"}


def test_unknown_field_is_a_clear_error(store, tmp_path: Path) -> None:
    run = Run(store, tmp_path, f"file://{tmp_path}/out", fields=["first_name", "loyalty_tier"])
    with pytest.raises(ExportConfigError, match="loyalty_tier"):
        run.export()


def test_operator_rechecks_consent_exports_and_returns_counts(store, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from campaign_orchestrator.operators.direct_mail import ExportDirectMailOperator

    run = Run(store, tmp_path, f"file://{tmp_path}/out")
    store.execute("UPDATE crm.consent SET status = 'opted_out', source = 'web' WHERE profile_id = 1")
    operator = ExportDirectMailOperator(
        task_id="export_letter", step_id="letter", campaign_file="unused.yaml", campaign_id="postcards"
    )
    operator.__dict__["campaign"] = run.config  # what the task would load from the campaign file
    result = operator.execute({"run_id": RUN_ID})
    assert result["exported"] == 40 and result["excluded_late"] == 1 and result["files"] == 2
    assert json.dumps(result)  # XCom-safe: counts only

    # Another run in which nobody may get a letter: the task is skipped and writes nothing.
    store.execute("UPDATE campaign.run SET dag_run_id = 'earlier' WHERE run_key = %s", (run.run_key,))
    store.execute("UPDATE crm.consent SET status = 'opted_out', source = 'web'")
    empty = Run(store, tmp_path / "empty", f"file://{tmp_path}/empty_out", profiles=[])
    assert empty.targeting.sendable == 0
    operator.__dict__["campaign"] = empty.config
    with pytest.raises(AirflowSkipException):
        operator.execute({"run_id": RUN_ID})
    assert not (tmp_path / "empty_out").exists()


# ---------------------------------------------------------------------------------------
# s3:// through ObjectStoragePath and the aws connection, against moto
# ---------------------------------------------------------------------------------------


@pytest.fixture
def s3_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> MotoEndpoint:
    pytest.importorskip("s3fs", reason="ObjectStoragePath needs s3fs for s3:// (apache-airflow-providers-amazon[s3fs])")
    endpoint = MotoEndpoint(moto_server)
    endpoint.reset()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(f"AIRFLOW_CONN_{endpoint.conn_id.upper()}", endpoint.conn_json())
    endpoint.client("s3").create_bucket(Bucket="mailhouse")
    return endpoint


def test_export_to_s3_through_the_aws_connection(
    store, tmp_path: Path, s3_endpoint: MotoEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Run(store, tmp_path, "s3://mailhouse/exports", connection_id=s3_endpoint.conn_id)
    assert output_path(run.step, "postcards", RUN_ID, "csv").conn_id == s3_endpoint.conn_id
    s3 = s3_endpoint.client("s3")
    # An upload interrupted midway is abandoned, not completed with half the rows.
    monkeypatch.setattr(export_module, "BATCH_ROWS", 10)
    with monkeypatch.context() as patch:
        original = export_module._Outputs.write

        def failing_write(self, rows):
            if self.rows >= 20:
                raise ConnectionError("store connection lost")
            original(self, rows)

        patch.setattr(export_module._Outputs, "write", failing_write)
        with pytest.raises(ConnectionError):
            run.export()
    assert s3.list_objects_v2(Bucket="mailhouse").get("KeyCount") == 0

    manifest = run.export()
    prefix = f"exports/postcards/{safe(RUN_ID)}/"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="mailhouse")["Contents"])
    assert keys == [prefix + "letter.csv", prefix + "letter.manifest.json", prefix + "letter.parquet"]

    def body(key: str) -> bytes:
        return s3.get_object(Bucket="mailhouse", Key=key)["Body"].read()

    assert json.loads(body(prefix + "letter.manifest.json")) == manifest
    for entry in manifest["files"]:
        assert entry["url"] == f"s3://mailhouse/{prefix}letter.{entry['format']}"
        data = body(prefix + f"letter.{entry['format']}")
        assert (entry["bytes"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert records(pd.read_parquet(io.BytesIO(body(prefix + "letter.parquet")))) == expected_rows(SENDABLE)
    csv_ids = pd.read_csv(io.BytesIO(body(prefix + "letter.csv")), dtype=str)["profile_id"].astype(int).tolist()
    assert csv_ids == SENDABLE
    sent = {row[2] for row in run.ledger().values() if row[0] == "sent"}
    assert sent == {f"s3://mailhouse/{prefix}letter.manifest.json"}
    # A retried task overwrites the same objects with the same bytes.
    again = run.export()
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in manifest["files"]]
    assert len(s3.list_objects_v2(Bucket="mailhouse")["Contents"]) == 3
