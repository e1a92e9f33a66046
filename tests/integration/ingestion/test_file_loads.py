"""File loads into a real store: versions, re-runs, duplicates, rejects, deletes, formats."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time

import psycopg
import pytest

from campaign_orchestrator.ingestion.load import LoadFailed
from tests.integration.ingestion.conftest import BOOKING_HEADER, booking, bookings, bookings_source, run


def loads(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT status, rows_read, inserted, updated, unchanged, deleted, rejected, duplicates "
                        "FROM ingest.load ORDER BY load_id").fetchall()


def land(sources, name: str, *lines: str, mtime: float | None = None):
    path = sources.file(name, "\n".join([BOOKING_HEADER, *lines]) + "\n")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_an_older_record_never_overwrites_a_newer_one_whatever_the_file_order(ingest_store, sources) -> None:
    config = bookings_source(sources)
    now = time.time()
    # The later export lands first: it is loaded first.
    land(sources, "bookings_2.csv", booking(1, "completed", "2026-12-02 10:00"), booking(2, "cancelled", "2026-11-30 10:00"),
         mtime=now - 100)
    land(sources, "bookings_1.csv", booking(1, "confirmed", "2026-12-01 10:00"), booking(2, "confirmed", "2026-12-01 10:00"),
         booking(3, "confirmed", "2026-12-01 10:00"), mtime=now - 50)
    first, second = run(ingest_store, config)
    assert first.url.endswith("bookings_2.csv") and (first.inserted, first.updated) == (2, 0)
    assert (second.inserted, second.updated, second.unchanged) == (1, 1, 1)  # 3 new; 2 newer; 1 older: kept
    assert bookings(ingest_store) == {
        1: ("completed", "100.00", "2026-12-02 10:00"),
        2: ("confirmed", "100.00", "2026-12-01 10:00"),
        3: ("confirmed", "100.00", "2026-12-01 10:00"),
    }


def test_re_running_the_same_file_is_a_no_op(ingest_store, sources) -> None:
    config = bookings_source(sources)
    path = land(sources, "bookings_1.csv", booking(1), booking(2))
    (outcome,) = run(ingest_store, config)
    assert outcome.status == "succeeded" and outcome.inserted == 2
    before = bookings(ingest_store)
    assert run(ingest_store, config) == []  # known by path and identity: not even read
    os.utime(path, (time.time() + 5, time.time() + 5))  # touched: a new identity, the same content
    shutil.copy(path, sources.landing / "bookings_1_again.csv")  # re-uploaded under another name
    outcomes = run(ingest_store, config)
    assert [o.status for o in outcomes] == ["skipped", "skipped"]
    assert all("same content as load" in o.error for o in outcomes)
    assert bookings(ingest_store) == before
    assert [row[0] for row in loads(ingest_store)] == ["succeeded", "skipped", "skipped"]
    version = ingest_store.execute("SELECT max(version) FROM crm.booking").fetchone()[0]
    assert version == 1  # no row was updated by the re-runs


def test_duplicate_keys_in_one_file_the_highest_version_wins(ingest_store, sources) -> None:
    config = bookings_source(sources)
    land(sources, "bookings_1.csv",
         booking(1, "completed", "2026-12-03 10:00"),   # line 2: the newest, first in the file
         booking(1, "confirmed", "2026-12-01 10:00"),   # line 3
         booking(2, "confirmed", "2026-12-01 10:00"),   # line 4
         booking(2, "cancelled", "2026-12-01 10:00"),   # line 5: same version, later line: wins
         booking(3))
    (outcome,) = run(ingest_store, config)
    assert (outcome.rows_read, outcome.inserted, outcome.duplicates, outcome.rejected) == (5, 3, 2, 0)
    assert bookings(ingest_store)[1][0] == "completed" and bookings(ingest_store)[2][0] == "cancelled"
    rejects = ingest_store.execute("SELECT line, kind, reason FROM ingest.reject ORDER BY line").fetchall()
    assert [(r[0], r[1]) for r in rejects] == [(3, "duplicate"), (4, "duplicate")]
    assert "line 2 has the same key and is loaded" in rejects[0][2]
    assert "line 5 has the same key and is loaded" in rejects[1][2]


def test_bad_rows_go_to_rejects_with_line_and_reason_and_the_rest_loads(ingest_store, sources) -> None:
    config = bookings_source(sources, share=0.9)
    land(sources, "bookings_1.csv",
         booking(1),                                         # line 2: fine
         booking(2, amount="12,5"),                          # line 3: a comma, unquoted: 9 fields
         booking(3, amount="abc"),                           # line 4: not a number
         booking(4, starts="2027-02-30"),                    # line 5: no such day
         ",1,1,confirmed,2026-11-20 10:00:00+00,2027-01-15,1,2026-12-01 10:00:00+00",  # line 6: no key
         booking(6, status="on_hold"),                       # line 7: refused by the CHECK
         booking(7, profile=999),                            # line 8: no such profile
         booking(8, updated="2026-12-01 10:00").replace(",2026-12-01 10:00:00+00", ","),  # line 9: no version
         booking(9))                                         # line 10: fine
    (outcome,) = run(ingest_store, config)
    assert (outcome.rows_read, outcome.inserted, outcome.rejected) == (9, 2, 7)
    assert set(bookings(ingest_store)) == {1, 9}
    rejects = {r[0]: r[1:] for r in ingest_store.execute(
        "SELECT line, kind, reason, raw FROM ingest.reject ORDER BY line")}
    assert rejects[3][:2] == ("structure", "9 fields where the header has 8")
    assert rejects[3][2] == booking(2, amount="12,5")  # the raw line as read
    assert rejects[4][:2] == ("invalid_value", "amount: 'abc' is not a valid numeric(10,2)")
    assert rejects[4][2]["amount"] == "abc" and rejects[4][2]["booking_id"] == "3"
    assert rejects[5][:2] == ("invalid_value", "starts_on: '2027-02-30' is not a valid date")
    assert rejects[6][:2] == ("missing_key", "missing key: booking_id is empty")
    assert rejects[7][0] == "constraint" and "booking_status_check" in rejects[7][1]
    assert rejects[8][:2] == ("constraint", "profile_id = 999: no such row in crm.profile (booking_profile_id_fkey)")
    assert rejects[9][:2] == ("missing_key", "missing version: updated_at is empty")
    assert outcome.path == "careful"


def test_past_the_reject_share_nothing_is_loaded_and_the_rejects_are_kept(ingest_store, sources) -> None:
    config = bookings_source(sources, share=0.2)
    land(sources, "bookings_0.csv", booking(1, "confirmed", "2026-11-01 10:00"))
    run(ingest_store, config)
    before = bookings(ingest_store)
    land(sources, "bookings_1.csv", booking(1, "completed", "2026-12-02 10:00"), booking(2), booking(3, amount="x"),
         booking(4, amount="y"))
    with pytest.raises(LoadFailed, match=r"2 of 4 records rejected \(50.0%\), more than max_reject_share 20.0%"):
        run(ingest_store, config)
    assert bookings(ingest_store) == before  # not even the good rows
    assert loads(ingest_store)[-1] == ("failed", 4, 0, 0, 0, 0, 2, 0)
    assert ingest_store.execute("SELECT count(*) FROM ingest.reject").fetchone()[0] == 2
    with pytest.raises(LoadFailed):  # not marked loaded: the next run tries it again
        run(ingest_store, config)


def test_a_full_snapshot_deletes_absent_keys_within_its_guard(ingest_store, sources) -> None:
    config = bookings_source(sources, extra="deletes: {snapshot: true, max_delete_share: 0.25}\n")
    land(sources, "bookings_1.csv", *(booking(i) for i in range(1, 11)))
    run(ingest_store, config)
    # Two keys gone (20%), one of them only because its row is bad: a rejected row still says
    # its key exists, so it is not deleted.
    land(sources, "bookings_2.csv", *(booking(i, updated="2026-12-02 10:00") for i in range(1, 8)),
         booking(8, amount="n/a", updated="2026-12-02 10:00"))
    (outcome,) = run(ingest_store, config)
    assert (outcome.updated, outcome.deleted, outcome.rejected) == (7, 2, 1)
    assert set(bookings(ingest_store)) == {1, 2, 3, 4, 5, 6, 7, 8}
    land(sources, "bookings_3.csv", *(booking(i, updated="2026-12-03 10:00") for i in range(1, 5)))
    before = bookings(ingest_store)
    with pytest.raises(LoadFailed, match=r"would delete 4 of the 8 rows of crm.booking \(50.0%\), more than "
                                         r"deletes.max_delete_share 25%"):
        run(ingest_store, config)
    assert bookings(ingest_store) == before  # the upserts of that file are rolled back too
    assert ingest_store.execute("SELECT status, error FROM ingest.load ORDER BY load_id DESC LIMIT 1").fetchone()[0] \
        == "failed"


def test_a_tombstone_deletes_its_key_unless_the_store_is_newer(ingest_store, sources) -> None:
    config = sources.source("bookings", """
        id: bookings
        schedule: manual
        source: {kind: csv, path: "{landing}/bookings_*.csv"}
        target: {table: crm.booking, key: booking_id, version: updated_at}
        deletes: {tombstone: deleted}
    """)
    header = BOOKING_HEADER + ",deleted"
    sources.file("bookings_1.csv", "\n".join([header, booking(1) + ",", booking(2) + ",", booking(3) + ",no"]))
    run(ingest_store, config)
    sources.file("bookings_2.csv", "\n".join([
        header, booking(1, updated="2026-12-02 10:00") + ",true",   # newer tombstone: deleted
        booking(2, updated="2026-11-01 10:00") + ",Y",             # older than the store: kept
        booking(4, updated="2026-12-02 10:00") + ",1"]))           # never loaded: nothing to delete
    (outcome,) = run(ingest_store, config)
    assert (outcome.deleted, outcome.inserted, outcome.unchanged) == (1, 0, 2)
    assert set(bookings(ingest_store)) == {2, 3}


def test_gzip_latin1_semicolons_and_no_header(ingest_store, sources) -> None:
    config = sources.source("profiles", """
        id: profiles
        schedule: manual
        source: {kind: csv, path: "{landing}/profiles_*.csv.gz", delimiter: ";", header: false, encoding: latin-1,
                 columns: [profile_id, first_name, city, updated_at]}
        target: {table: crm.profile, key: profile_id, version: updated_at}
    """)
    text = "1;Zoë;Besançon;2027-01-01 00:00:00+00\r\n2;\"Chloé; \"\"Clo\"\"\";Liège;2027-01-01 00:00:00+00\r\n"
    with gzip.open(sources.landing / "profiles_1.csv.gz", "wb") as f:
        f.write(text.encode("latin-1"))
    (outcome,) = run(ingest_store, config)
    assert (outcome.updated, outcome.rejected) == (2, 0)
    rows = ingest_store.execute("SELECT first_name, city FROM crm.profile WHERE profile_id <= 2 ORDER BY 1").fetchall()
    assert rows == [('Chloé; "Clo"', "Liège"), ("Zoë", "Besançon")]


def test_a_file_copy_cannot_split_is_read_record_by_record(ingest_store, sources) -> None:
    config = bookings_source(sources, share=0.9)
    # A quoted field spanning two lines, then a line with bytes that are not UTF-8.
    body = (BOOKING_HEADER + "\n" + booking(1).replace("confirmed", '"confirmed"') + "\n"
            + '2,1,1,"cancelled",2026-11-20 10:00:00+00,2027-01-15,"100.00",2026-12-01 10:00:00+00\n')
    path = sources.landing / "bookings_1.csv"
    path.write_bytes(body.encode() + b"3,1,1,confirm\xe9d,2026-11-20 10:00:00+00,2027-01-15,1,2026-12-01 10:00:00+00\n"
                     + booking(4).encode() + b"\n")
    (outcome,) = run(ingest_store, config)
    assert set(bookings(ingest_store)) == {1, 2, 4}
    (line, reason), = ingest_store.execute("SELECT line, reason FROM ingest.reject").fetchall()
    assert (line, reason) == (4, "not valid utf-8 text")


def test_parquet_and_json_lines(ingest_store, sources) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = sources.source("parquet", """
        id: parquet_bookings
        schedule: manual
        source: {kind: parquet, path: "{landing}/*.parquet", batch_rows: 1000}
        target: {table: crm.booking, key: booking_id, version: updated_at}
    """)
    n = 2500
    table = pa.table({
        "booking_id": pa.array(range(1, n + 1), pa.int64()),
        "profile_id": pa.array([1 + i % 30 for i in range(n)], pa.int64()),
        "product_id": pa.array([1] * n, pa.int32()),
        "status": ["confirmed"] * n,
        "booked_at": pa.array([dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)] * n, pa.timestamp("us", "UTC")),
        "starts_on": pa.array([dt.date(2027, 1, 15)] * n),
        "amount": pa.array([12.5] * n),
        "updated_at": pa.array([dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc)] * n, pa.timestamp("us", "UTC")),
        "unused": ["x"] * n,
    })
    pq.write_table(table, sources.landing / "bookings.parquet", row_group_size=700)
    with pytest.raises(LoadFailed, match="new column.*'unused' not in crm.booking"):
        run(ingest_store, parquet)  # drift: a column the target lacks is never silently dropped
    parquet = sources.source("parquet", (sources.folder / "parquet.yaml").read_text().replace(
        "version: updated_at}", "version: updated_at, ignore_columns: [unused]}"))
    (outcome,) = run(ingest_store, parquet)
    assert (outcome.rows_read, outcome.inserted) == (n, n)
    assert bookings(ingest_store)[2500] == ("confirmed", "12.50", "2026-12-01 10:00")

    jsonl = sources.source("jsonl", """
        id: jsonl_profiles
        schedule: manual
        source: {kind: jsonl, path: "{landing}/*.jsonl"}
        target: {table: crm.profile, key: profile_id, version: updated_at}
        max_reject_share: 0.5
    """)
    ingest_store.execute("UPDATE crm.profile SET first_name = 'Ann', city = 'Lyon' WHERE profile_id IN (1, 3)")
    records = [{"profile_id": 1, "city": "Paris", "updated_at": "2027-12-05T10:00:00Z"},
               "not json", [1, 2],
               {"profile_id": 3, "updated_at": "2027-12-05T10:00:00Z", "tags": {"vip": True}}]
    with open(sources.landing / "changes.jsonl", "w") as f:
        f.write("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n\n")
    with pytest.raises(LoadFailed, match="new column.*'tags' not in crm.profile"):
        run(ingest_store, jsonl)
    jsonl = sources.source("jsonl", (sources.folder / "jsonl.yaml").read_text() + "on_drift: {new_columns: warn}\n")
    (outcome,) = run(ingest_store, jsonl)
    assert (outcome.rows_read, outcome.updated, outcome.rejected) == (4, 2, 2)
    assert any("'tags'" in w and "not loaded" in w for w in outcome.warnings)
    rows = ingest_store.execute("SELECT profile_id, first_name, city FROM crm.profile WHERE profile_id IN (1, 3) "
                                "ORDER BY 1").fetchall()
    # No record had first_name: it is not loaded. One record lacked city: that record's city is null.
    assert rows == [(1, "Ann", "Paris"), (3, "Ann", None)]
    reasons = [r[0] for r in ingest_store.execute("SELECT reason FROM ingest.reject ORDER BY line")]
    assert reasons[0].startswith("not valid JSON") and reasons[1] == "a JSON list, not an object"


def test_s3_through_the_aws_connection(ingest_store, sources, moto_server, monkeypatch) -> None:
    from tests.fixtures.aws import MotoEndpoint

    endpoint = MotoEndpoint(moto_server)
    endpoint.reset()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(f"AIRFLOW_CONN_{endpoint.conn_id.upper()}", endpoint.conn_json())
    s3 = endpoint.client("s3")
    s3.create_bucket(Bucket="landing")
    config = sources.source("s3", f"""
        id: s3_bookings
        schedule: on_file
        source: {{kind: csv, path: "s3://landing/exports/bookings_*.csv.gz", conn_id: {endpoint.conn_id}}}
        target: {{table: crm.booking, key: booking_id, version: updated_at}}
    """)
    body = gzip.compress(("\n".join([BOOKING_HEADER, booking(1), booking(2)]) + "\n").encode())
    s3.put_object(Bucket="landing", Key="exports/bookings_1.csv.gz", Body=body)
    s3.put_object(Bucket="landing", Key="exports/other.csv", Body=b"x")
    (outcome,) = run(ingest_store, config)
    assert outcome.url == "s3://landing/exports/bookings_1.csv.gz" and outcome.inserted == 2
    identity = ingest_store.execute("SELECT identity FROM ingest.load").fetchone()[0]
    assert identity == s3.head_object(Bucket="landing", Key="exports/bookings_1.csv.gz")["ETag"].strip('"')
    assert run(ingest_store, config) == []
