"""``campaigns ingest validate | preview | run`` without Airflow."""

from __future__ import annotations

from campaign_orchestrator.cli import main
from tests.integration.ingestion.conftest import BOOKING_HEADER, booking, bookings, bookings_source


def test_validate_names_file_line_and_field(sources, monkeypatch, capsys) -> None:
    assert main(["ingest", "validate"]) == 0
    assert "ingestion source file(s) OK" in capsys.readouterr().out
    (sources.folder / "broken.yaml").write_text("schedule: manual\nsource: {kind: csv, path: a.csv, header: maybe}\n"
                                                "target: {table: crm.booking, key: booking_id}\n")
    monkeypatch.setenv("CAMPAIGNS_INGESTION_DIR", str(sources.folder))
    assert main(["ingest", "validate"]) == 1
    err = capsys.readouterr().err
    assert f"{sources.folder}/broken.yaml:2: source.header: Input should be a valid boolean" in err
    assert "1 problem(s) in 1 ingestion source file(s)" in err


def test_preview_shows_rows_types_and_rejects_and_keeps_nothing(ingest_store, sources, monkeypatch, capsys) -> None:
    bookings_source(sources, share=0.9)
    monkeypatch.setenv("CAMPAIGNS_INGESTION_DIR", str(sources.folder))
    sources.file("bookings_1.csv", "\n".join([BOOKING_HEADER, booking(1), booking(2, amount="lots"),
                                              booking(3, status="lost")]) + "\n")
    assert main(["ingest", "preview", "bookings", "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert "amount      text                       amount numeric(10,2)" in out  # inferred beside the target's
    assert "booking_id  bigint                     booking_id bigint" in out
    assert "first 2 record(s):" in out and "      3: 2 | 1 | 1 | confirmed" in out
    assert "a load now would read 3: insert 1, update 0" in out and "reject 2" in out
    assert "invalid_value: amount: 'lots' is not a valid numeric(10,2) (line 3)" in out
    assert "constraint: violates booking_status_check" in out
    assert bookings(ingest_store) == {} and ingest_store.execute("SELECT count(*) FROM ingest.load").fetchone() == (0,)

    assert main(["ingest", "run", "bookings"]) == 0
    assert "read 3: inserted 1, updated 0, unchanged 0, deleted 0, rejected 2" in capsys.readouterr().out
    assert main(["ingest", "run", "bookings"]) == 0
    assert "nothing to load: every file is loaded already" in capsys.readouterr().out
    assert main(["ingest", "run", "nope"]) == 1
    assert "no ingestion source 'nope'" in capsys.readouterr().err
