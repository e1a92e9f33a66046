"""The authoring CLI: what a data engineer sees when a campaign is right and when it is not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from campaign_orchestrator.cli import main
from campaign_orchestrator.config.schema import campaign_json_schema
from campaign_orchestrator.store.demo_data import generate_demo_data

ROOT = Path(__file__).resolve().parents[3]
CAMPAIGNS = ROOT / "dags" / "campaigns"


def test_validate_passes_on_the_shipped_campaigns(capsys) -> None:
    assert main(["validate"]) == 0
    assert "campaign file(s) OK" in capsys.readouterr().out


def test_validate_reports_every_problem_and_exits_non_zero(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "campaigns"
    shutil.copytree(CAMPAIGNS, folder)
    text = (folder / "winter_sale.yaml").read_text().replace("lookback_days: 365", "look_back: 365")
    (folder / "winter_sale.yaml").write_text(text.replace("channel: email", "channel: pigeon"))
    assert main(["validate", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "winter_sale.yaml" in err and "steps[0].channel: unknown channel 'pigeon'" in err
    files = len([p for p in CAMPAIGNS.glob("*.yaml") if not p.name.startswith("_")])
    assert f"1 problem(s) in {files} campaign file(s)" in err


def test_validate_catches_template_and_param_mistakes(tmp_path: Path, capsys, monkeypatch) -> None:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "include", root / "include")
    shutil.copytree(CAMPAIGNS, root / "dags" / "campaigns")
    monkeypatch.setenv("CAMPAIGNS_HOME", str(root))
    subject = root / "include" / "templates" / "winter_sale" / "subject.txt"
    subject.write_text("Hi {{ profle.first_name }}")
    cfg = root / "dags" / "campaigns" / "winter_sale.yaml"
    cfg.write_text(cfg.read_text().replace("    lookback_days: 365", "    lookback: 365"))
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "winter_sale/subject.txt:1: unknown name 'profle'; did you mean 'profile'?" in err
    assert "uses %(lookback_days)s but no value is given" in err
    assert "lookback not used by winter_sale.sql" in err


def test_schema_is_json_schema_and_the_committed_copy_is_current(capsys) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == campaign_json_schema()
    # Message steps are told apart by their channel; a wait step by its `wait` key.
    kinds = {ref["$ref"].rsplit("/", 1)[1] for ref in printed["properties"]["steps"]["items"]["oneOf"]}
    assert kinds == {"EmailStep", "SmsStep", "PushStep", "DirectMailStep", "WebhookStep", "WaitStep"}
    assert printed["$defs"]["EmailStep"]["properties"]["channel"]["const"] == "email"
    assert "wait" in printed["$defs"]["WaitStep"]["required"]
    committed = json.loads((CAMPAIGNS / "campaign.schema.json").read_text())
    assert committed == printed, "run `make schema` and commit dags/campaigns/campaign.schema.json"


def test_the_console_script_is_installed() -> None:
    result = subprocess.run([str(Path(sys.executable).with_name("campaigns")), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "validate" in result.stdout and "preview" in result.stdout


@pytest.mark.integration
def test_preview_counts_each_stage_and_records_nothing(store, capsys) -> None:
    generate_demo_data(store, profiles=800, seed=3)
    assert main(["preview", "winter_sale", "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    step = preview["steps"][0]
    assert preview["audience"] == step["sendable"] + sum(step["excluded"].values()) > 0
    assert store.execute("SELECT count(*) FROM campaign.run").fetchone() == (0,)
    assert store.execute("SELECT count(*) FROM campaign.message").fetchone() == (0,)
    assert main(["preview", "winter_sale", "--param", "min_bookings=100"]) == 0
    assert "audience" in capsys.readouterr().out


@pytest.mark.integration
def test_calculate_counts_each_stage_like_preview_and_records_nothing(store, capsys) -> None:
    generate_demo_data(store, profiles=800, seed=3)
    assert main(["preview", "winter_sale", "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    assert main(["calculate", "winter_sale", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["audience"]["members"] == preview["audience"] > 0
    [step] = counts["steps"]
    assert (step["sendable"], step["excluded"], step["batches"]) == (
        preview["steps"][0]["sendable"], preview["steps"][0]["excluded"], preview["steps"][0]["batches"])
    assert store.execute("SELECT count(*) FROM campaign.run").fetchone() == (0,)
    assert store.execute("SELECT count(*) FROM campaign.message").fetchone() == (0,)

    assert main(["calculate", "low_stock_alert"]) == 0
    out = capsys.readouterr().out
    for stage in ("block low_stock_bookings", "block upcoming", "combined", "deduplicated", "held out",
                  "segment subscribers", "step invite_email", "excluded holdout", "sendable"):
        assert stage in out, stage
    assert main(["calculate", "winter_sale", "--param", "min_bookings=100", "--limit", "5", "--json"]) == 0
    fewer = json.loads(capsys.readouterr().out)
    assert counts["combined"]["members"] > fewer["combined"]["members"] > 5 == fewer["audience"]["members"]
    assert main(["calculate", "winter_sale", "--limit", "0"]) == 1
    assert "--limit 0: give a positive number" in capsys.readouterr().err


@pytest.mark.integration
def test_render_shows_the_message_or_the_reason(store, capsys) -> None:
    generate_demo_data(store, profiles=800, seed=3)
    sendable = store.execute(
        """
        SELECT p.profile_id, p.first_name FROM crm.profile p JOIN crm.consent c USING (profile_id)
        WHERE c.channel = 'email' AND c.status = 'opted_in' AND p.email ~ '^[a-z.0-9]+@example\\.com$'
          AND EXISTS (SELECT 1 FROM crm.subscription s WHERE s.profile_id = p.profile_id AND s.status = 'active')
        ORDER BY 1 LIMIT 1
        """
    ).fetchone()
    assert main(["render", "winter_sale", "--profile", str(sendable[0])]) == 0
    out = capsys.readouterr().out
    assert "Subject:" in out and sendable[1] in out and "--- text part ---" in out
    opted_out = store.execute(
        """
        SELECT profile_id FROM crm.consent c WHERE channel = 'email' AND status = 'opted_out'
          AND EXISTS (SELECT 1 FROM crm.subscription s WHERE s.profile_id = c.profile_id AND s.status = 'active')
        ORDER BY 1 LIMIT 1
        """
    ).fetchone()[0]
    assert main(["render", "winter_sale", "--profile", str(opted_out)]) == 0
    assert "gets no message from step offer_email: opted_out" in capsys.readouterr().out
    assert main(["render", "winter_sale", "--profile", "999999999"]) == 0
    assert "no such profile" in capsys.readouterr().out


@pytest.mark.integration
def test_proof_goes_to_seed_addresses_only_and_leaves_the_ledger_alone(store, capsys, smtp_server, monkeypatch) -> None:
    generate_demo_data(store, profiles=300, seed=3)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_server.conn_json())
    profile_id, first_name = store.execute(
        "SELECT profile_id, first_name FROM crm.profile WHERE first_name IS NOT NULL ORDER BY 1 LIMIT 1"
    ).fetchone()
    code = main(["proof", "winter_sale", "--profile", str(profile_id), "--to", "qa@shop.example", "--to", "boss@shop.example"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == ["qa@shop.example: sent", "boss@shop.example: sent"]
    received = {m.rcpt_tos[0]: m.data.decode() for m in smtp_server.handler.messages}
    assert set(received) == {"qa@shop.example", "boss@shop.example"}
    assert first_name in received["qa@shop.example"]
    assert store.execute("SELECT count(*) FROM campaign.message").fetchone() == (0,)
    assert store.execute("SELECT count(*) FROM campaign.run").fetchone() == (0,)


@pytest.mark.integration
def test_validate_store_checks_the_entity_catalog_and_audiences_against_the_live_store(store, tmp_path, capsys, monkeypatch):
    assert main(["validate", "--store"]) == 0
    assert "checked against the store" in capsys.readouterr().out
    root = tmp_path / "project"
    shutil.copytree(ROOT / "include", root / "include")
    shutil.copytree(CAMPAIGNS, root / "dags" / "campaigns")
    monkeypatch.setenv("CAMPAIGNS_HOME", str(root))
    catalog = root / "include" / "entities.yaml"
    catalog.write_text(catalog.read_text().replace("links: {profile: profile_id, product: product_id}",
                                                   "links: {profile: customer_id, product: product_id}"))
    assert main(["validate", "--store"]) == 1
    assert "entities.booking.links.profile: crm.booking has no column 'customer_id'" in capsys.readouterr().err


@pytest.mark.integration
def test_store_demo_data_takes_a_number_of_bookings_per_profile(store, capsys) -> None:
    assert main(["store", "demo-data", "--profiles", "1000", "--bookings-per-profile", "4"]) == 0
    assert "profile: 1,000" in capsys.readouterr().out
    assert 3600 <= store.execute("SELECT count(*) FROM crm.booking").fetchone()[0] <= 4400
    assert main(["store", "demo-data", "--profiles", "10", "--bookings-per-profile", "0"]) == 1
    assert "bookings_per_profile must be in (0, 100], got 0.0" in capsys.readouterr().err


@pytest.mark.integration
def test_an_unknown_param_is_an_error_naming_the_valid_ones(store, capsys) -> None:
    generate_demo_data(store, profiles=300, seed=3)
    for command in ("calculate", "preview"):
        assert main([command, "winter_sale", "--param", "no_such_param=5"]) == 1
        err = capsys.readouterr().err
        assert "unknown audience parameter 'no_such_param'" in err and "lookback_days, min_bookings" in err
    assert main(["calculate", "winter_sale", "--param", "min_booking=5"]) == 1
    assert "did you mean 'min_bookings'?" in capsys.readouterr().err


@pytest.mark.integration
def test_render_picks_one_of_a_profiles_entities(store, capsys, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "include", root / "include")
    (root / "dags" / "campaigns").mkdir(parents=True)
    (root / "dags" / "campaigns" / "trips.yaml").write_text(
        "schedule: manual\n"
        "audience:\n  blocks:\n    trips: {from: booking, where: {status: confirmed}, entity_key: booking}\n"
        "steps:\n  - {id: trip_email, channel: email, purpose: transactional, template: trip, "
        "sender: 'W <w@w.example>'}\n"
    )
    folder = root / "include" / "templates" / "trip"
    folder.mkdir()
    for part in ("subject.txt", "body.txt", "body.html"):
        (folder / part).write_text("Booking {{ entity_key }}: {{ entity.product.name }}")
    monkeypatch.setenv("CAMPAIGNS_HOME", str(root))
    generate_demo_data(store, profiles=300, seed=3)
    profile_id, first, second = store.execute(
        """
        SELECT b.profile_id, min(b.booking_id), max(b.booking_id) FROM crm.booking b
        JOIN crm.profile p USING (profile_id)
        WHERE b.status = 'confirmed' AND p.email ~ '^[a-z.0-9]+@example\\.com$'
          AND NOT EXISTS (SELECT FROM crm.suppression s WHERE s.address = lower(btrim(p.email)))
        GROUP BY 1 HAVING count(*) >= 2 ORDER BY 1 LIMIT 1
        """
    ).fetchone()
    for key in (first, second):
        assert main(["render", "trips", "--profile", str(profile_id), "--entity", str(key)]) == 0
        assert f"Booking {key}:" in capsys.readouterr().out
    assert main(["render", "trips", "--profile", str(profile_id)]) == 0
    assert f"Booking {first}:" in capsys.readouterr().out  # their first, by default
    assert main(["render", "trips", "--profile", str(profile_id), "--entity", "424242"]) == 0
    out = capsys.readouterr().out
    assert "has no entity '424242'" in out and str(first) in out and str(second) in out


@pytest.mark.integration
def test_runs_are_listed_and_a_rehearsal_deleted_on_purpose(store, capsys) -> None:
    store.execute(
        "INSERT INTO campaign.run (campaign_id, dag_run_id, logical_date) VALUES "
        "('winter_sale', 'manual__rehearsal', '2026-12-07 09:00+00'), ('winter_sale', 'scheduled__real', NULL)"
    )
    assert main(["runs", "list", "winter_sale"]) == 0
    out = capsys.readouterr().out
    assert "manual__rehearsal" in out and "scheduled__real" in out and "2026-12-07 09:00" in out
    assert main(["runs", "delete", "winter_sale", "manual__rehearsal", "--yes"]) == 0
    assert "deleted run manual__rehearsal of winter_sale" in capsys.readouterr().out
    assert store.execute("SELECT dag_run_id FROM campaign.run").fetchall() == [("scheduled__real",)]
    assert main(["runs", "delete", "winter_sale", "manual__rehearsal", "--yes"]) == 1
    assert "no run 'manual__rehearsal' of winter_sale" in capsys.readouterr().err


def test_env_prints_what_make_sets_for_a_shell_of_ones_own(capsys, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CAMPAIGN_STORE", raising=False)
    monkeypatch.delenv("AIRFLOW__CORE__DAGS_FOLDER", raising=False)
    monkeypatch.delenv("CAMPAIGNS_EMBEDDED_STORE", raising=False)
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert f"export AIRFLOW__CORE__DAGS_FOLDER={ROOT / 'dags'}" in out
    assert f"export CAMPAIGNS_EMBEDDED_STORE={ROOT / '.campaign-store'}" in out
    assert "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE" not in out  # the tests' own is kept


@pytest.mark.integration
def test_render_shows_the_variant_each_locale_gets_and_why(store, capsys) -> None:
    generate_demo_data(store, profiles=800, seed=3)
    subjects = {"en": "our winter sale is on", "fr": "nos soldes d'hiver", "de": "Winterschlussverkauf",
                "es": "rebajas de invierno", "it": "saldi invernali"}
    sendable = dict(store.execute(
        """
        SELECT DISTINCT ON (p.locale) p.locale, p.profile_id FROM crm.profile p JOIN crm.consent c USING (profile_id)
        WHERE c.channel = 'email' AND c.status = 'opted_in' AND p.email ~ '^[a-z.0-9]+@example\\.com$'
          AND EXISTS (SELECT 1 FROM crm.subscription s WHERE s.profile_id = p.profile_id AND s.status = 'active')
          AND NOT EXISTS (SELECT FROM crm.suppression s WHERE s.address = lower(btrim(p.email)))
        ORDER BY p.locale, p.profile_id
        """
    ).fetchall())
    assert set(sendable) == set(subjects)
    for locale, profile_id in sendable.items():
        assert main(["render", "winter_sale", "--profile", str(profile_id)]) == 0
        out = capsys.readouterr().out
        assert subjects[locale] in out, (locale, out[:400])
        expected = "default" if locale == "en" else locale
        assert f"Template: variant {expected} (" in out
    # A regional locale goes to its language; one with no variant at all to the default.
    store.execute("UPDATE crm.profile SET locale = 'fr-CA' WHERE profile_id = %s", (sendable["fr"],))
    store.execute("UPDATE crm.profile SET locale = 'pt-BR' WHERE profile_id = %s", (sendable["de"],))
    assert main(["render", "winter_sale", "--profile", str(sendable["fr"])]) == 0
    out = capsys.readouterr().out
    assert "Template: variant fr (profile locale 'fr-CA': fr-ca → fr)" in out and subjects["fr"] in out
    assert main(["render", "winter_sale", "--profile", str(sendable["de"])]) == 0
    out = capsys.readouterr().out
    assert "Template: variant default (profile locale 'pt-BR': pt-br → pt → default)" in out and subjects["en"] in out
