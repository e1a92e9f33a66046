"""Content per language: which variant a profile's locale gets, and what validation refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from campaign_orchestrator.channels.base import Recipient
from campaign_orchestrator.channels.email.render import EmailRenderer
from campaign_orchestrator.channels.locales import Variants
from campaign_orchestrator.channels.sms.render import SmsRenderer
from campaign_orchestrator.cli import main
from campaign_orchestrator.config.channels import EmailStep, SmsStep
from campaign_orchestrator.paths import ProjectPaths

ROOT = Path(__file__).resolve().parents[3]
PARTS = ("subject.txt", "body.html", "body.txt")


class Campaign:
    id = "locales"
    description = "Locale variants"


def write_variant(folder: Path, greeting: str, extra: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "subject.txt").write_text(f"{greeting} {{{{ profile.first_name }}}}")
    (folder / "body.html").write_text(f"<p>{greeting}</p>{extra}")
    (folder / "body.txt").write_text(f"{greeting}{extra}")


@pytest.fixture
def paths(tmp_path: Path) -> ProjectPaths:
    base = tmp_path / "include" / "templates" / "sale"
    write_variant(base, "Hello")
    for locale, greeting in {"fr": "Bonjour", "fr-CA": "Allo", "de": "Hallo", "es": "Hola", "it": "Ciao"}.items():
        write_variant(base / locale, greeting)
    return ProjectPaths(tmp_path)


def email_step(**extra) -> EmailStep:
    return EmailStep.model_validate({"id": "sale_email", "channel": "email", "template": "sale", "purpose": "transactional",
                                     "sender": "W <w@w.example>", **extra})


@pytest.mark.parametrize(("locale", "variant"), [
    ("fr-CA", "fr-CA"), ("fr_ca", "fr-CA"), ("fr-BE", "fr"), ("FR", "fr"), ("de-AT", "de"), ("de-CH", "de"),
    ("es-MX", "es"), ("it", "it"), ("en-GB", "default"), ("pt-BR", "default"), (None, "default"), ("", "default"),
])
def test_the_chain_is_the_locale_then_its_language_then_the_default(paths, locale, variant) -> None:
    variants = Variants.discover(paths.templates, "sale", PARTS)
    assert variants.variants == ("default", "de", "es", "fr", "fr-CA", "it")
    assert variants.choose(locale).variant == variant


def test_explicit_fallbacks_and_a_named_default(paths) -> None:
    variants = Variants.discover(paths.templates, "sale", PARTS, fallback={"ca": "es", "pt": "es", "gl": "ca"},
                                 default="fr")
    assert variants.choose("ca-ES").variant == "es"  # ca-es -> ca -> es
    assert variants.choose("gl").variant == "es"  # gl -> ca -> es: a chain of fallbacks
    assert variants.choose("pt-BR").variant == "es"
    assert variants.choose("nl").variant == "fr"  # nothing on the chain: the named default
    assert variants.choose("pt-BR").explain() == "variant es (profile locale 'pt-BR': pt-br → pt → es)"


def test_the_renderer_reads_the_locale_and_renders_its_variant(paths) -> None:
    renderer = EmailRenderer(email_step(), Campaign(), 7, paths)
    assert "locale" in renderer.profile_fields and "first_name" in renderer.profile_fields
    for locale, greeting, variant in [("fr-CA", "Allo", "fr-CA"), ("fr", "Bonjour", "fr"), ("de", "Hallo", "de"),
                                      ("es", "Hola", "es"), ("it-CH", "Ciao", "it"), ("en", "Hello", "default")]:
        out = renderer.render(Recipient(1, "", "a@example.com", {"first_name": "Ana", "locale": locale}))
        assert out.variant == variant
        assert f"Subject: {greeting} Ana" in out.payload.decode()


def test_sms_segments_are_counted_per_variant(tmp_path) -> None:
    base = tmp_path / "include" / "templates" / "sms_sale"
    base.mkdir(parents=True)
    (base / "sms.txt").write_text("Sale on: 30% off")
    (base / "el").mkdir()
    (base / "el" / "sms.txt").write_text("Εκπτώσεις: 30% έκπτωση " * 4)  # Greek: UCS-2, more segments
    step = SmsStep.model_validate({"id": "sms", "channel": "sms", "template": "sms_sale", "purpose": "transactional"})
    renderer = SmsRenderer(step, Campaign(), 7, ProjectPaths(tmp_path))
    english = renderer.render(Recipient(1, "", "+33612345678", {"locale": "en"}))
    greek = renderer.render(Recipient(2, "", "+306912345678", {"locale": "el-GR"}))
    assert (english.variant, english.units) == ("default", 1)
    assert greek.variant == "el" and greek.units == 2


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "include", root / "include")
    shutil.copytree(ROOT / "dags" / "campaigns", root / "dags" / "campaigns")
    monkeypatch.setenv("CAMPAIGNS_HOME", str(root))
    return root


def validate_errors(capsys) -> str:
    assert main(["validate"]) == 1
    return capsys.readouterr().err


def test_the_shipped_winter_sale_has_five_languages_and_validates(project: Path, capsys) -> None:
    folder = project / "include/templates/winter_sale"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["de", "es", "fr", "it"]
    assert main(["validate"]) == 0


def test_a_variant_that_drops_a_link_or_mistypes_a_field_is_refused(project: Path, capsys) -> None:
    fr = project / "include/templates/winter_sale/fr"
    (fr / "body.txt").write_text((fr / "body.txt").read_text().replace("{{ campaign.id | urlencode }}", ""))
    de = project / "include/templates/winter_sale/de"
    (de / "subject.txt").write_text("{{ profile.frist_name }}, Winterschlussverkauf")
    err = validate_errors(capsys)
    assert "winter_sale/fr/body.txt: lacks campaign (every variant uses the same variables" in err
    assert "winter_sale/de/subject.txt: lacks profile.first_name; uses profile.frist_name that winter_sale/subject.txt does not" in err
    assert "crm.profile has no column 'frist_name'" in err


def test_a_variant_missing_a_part_is_refused(project: Path, capsys) -> None:
    (project / "include/templates/winter_sale/it/body.html").unlink()
    assert "winter_sale/it: lacks body.html (every variant has subject.txt, body.html, body.txt)" in validate_errors(capsys)


def test_no_default_and_no_locales_default_is_a_validation_error(project: Path, capsys) -> None:
    folder = project / "include/templates/winter_sale"
    for part in PARTS:
        (folder / part).unlink()
    err = validate_errors(capsys)
    assert "winter_sale: no default variant" in err and "set locales.default" in err
    config = project / "dags/campaigns/winter_sale.yaml"
    config.write_text(config.read_text().replace("    template: winter_sale\n",
                                                 "    template: winter_sale\n    locales: {default: es}\n"))
    assert main(["validate", str(config)]) == 0  # the other campaigns on this template still lack one
    config.write_text(config.read_text().replace("locales: {default: es}", "locales: {default: pt, fallback: {ca: gl}}"))
    assert main(["validate", str(config)]) == 1
    err = capsys.readouterr().err
    assert "locales.default: 'pt' is not a variant of winter_sale" in err
    assert "locales.fallback: ca -> gl, but winter_sale has no variant 'gl'" in err
