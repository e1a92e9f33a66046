from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from campaign_orchestrator.channels.templating import (
    TemplateCheckError,
    check_templates,
    referenced_fields,
    template_environment,
    undeclared_variables,
)

CONTEXT = {
    "profile": {"first_name": "Ana", "city": None},
    "campaign": {"id": "spring", "description": "Spring offers"},
    "message": {"id": "<m@x>"},
    "entity_key": "",
    "unsubscribe_url": "https://campaigns.example.com/campaigns-unsubscribe/unsubscribe/t.s",
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def render(root: Path, name: str, **context) -> str:
    return template_environment(root).get_template(name).render({**CONTEXT, **context})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ profile.__class__ }}",
        "{{ campaign.update({'id': 'x'}) }}",
        "{{ profile.pop('first_name') }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_python_internals_and_mutation(tmp_path: Path, source: str) -> None:
    write(tmp_path, {"t/body.txt": source})
    with pytest.raises(SecurityError):
        render(tmp_path, "t/body.txt")


def test_html_is_escaped_and_text_is_not(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.html": "<p>{{ profile.first_name }}</p>", "t/body.txt": "{{ profile.first_name }}"})
    name = "<b>Ana & Bo</b>"
    assert render(tmp_path, "t/body.html", profile={"first_name": name}) == "<p>&lt;b&gt;Ana &amp; Bo&lt;/b&gt;</p>"
    assert render(tmp_path, "t/body.txt", profile={"first_name": name}) == name


def test_null_fields_render_empty_and_trailing_newline_is_dropped(tmp_path: Path) -> None:
    write(tmp_path, {"t/subject.txt": "Hello {{ profile.first_name }} from {{ profile.city }}\n"})
    assert render(tmp_path, "t/subject.txt") == "Hello Ana from "


def test_unknown_names_are_errors_at_render(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.txt": "{{ profile.last_name }}"})
    with pytest.raises(UndefinedError, match="last_name"):
        render(tmp_path, "t/body.txt")


def test_environment_and_compiled_templates_are_cached(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.txt": "x"})
    env = template_environment(tmp_path)
    assert template_environment(str(tmp_path)) is env
    assert env.get_template("t/body.txt") is env.get_template("t/body.txt")


def test_undeclared_variables_names_file_and_name(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.txt": "{% for x in range(3) %}{{ loop.index }}{{ user.name }}{% endfor %}"})
    env = template_environment(tmp_path)
    with pytest.raises(TemplateCheckError, match=r"t/body.txt: unknown name 'user'"):
        undeclared_variables(env, ["t/body.txt"])


def test_undeclared_variables_suggests_a_close_name(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.txt": "{{ profil.first_name }}"})
    with pytest.raises(TemplateCheckError, match="did you mean 'profile'"):
        undeclared_variables(template_environment(tmp_path), ["t/body.txt"])


def test_allowed_names_and_jinja_globals_pass(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "t/body.txt": (
                "{% set ns = namespace(n=0) %}{% for i in range(2) %}{% set ns.n = ns.n + i %}{% endfor %}"
                "{{ campaign.id }} {{ message.id }} {{ entity_key }} {{ profile.first_name }} {{ ns.n }}"
            )
        },
    )
    undeclared_variables(template_environment(tmp_path), ["t/body.txt"])


def test_undeclared_variables_follows_includes(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.html": "{% include '_footer.html' %}", "_footer.html": "{{ preferences_url }}"})
    with pytest.raises(TemplateCheckError, match=r"_footer.html: unknown name 'preferences_url'"):
        undeclared_variables(template_environment(tmp_path), ["t/body.html"])


def test_referenced_fields_everywhere(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "_base.html": "<html>{% block body %}{% endblock %}{{ profile.footer_note }}</html>",
            "_partial.html": "{{ profile.loyalty_tier }}",
            "t/body.html": (
                "{% extends '_base.html' %}{% block body %}"
                "Hi {{ profile.first_name }} from {{ profile['city'] }}"
                "{% if profile.is_vip %}VIP{% endif %}"
                "{% for trip in profile.trips %}{{ trip.name }}{% endfor %}"
                "{{ profile.last_name | upper | default('x') }}"
                "{{ profile.get('country', 'FR') }}"
                "{% set nick = profile.nickname or profile.first_name %}{{ nick }}"
                "{% include '_partial.html' %}"
                "{% endblock %}"
            ),
        },
    )
    fields = referenced_fields(template_environment(tmp_path), ["t/body.html"])
    assert fields == (
        "city",
        "country",
        "first_name",
        "footer_note",
        "is_vip",
        "last_name",
        "loyalty_tier",
        "nickname",
        "trips",
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ profile }}", "as a whole"),
        ("{% set p = profile %}{{ p.city }}", "as a whole"),
        ("{% for k in profile %}{{ k }}{% endfor %}", "as a whole"),
        ("{% set k = 'city' %}{{ profile[k] }}", "constant field name"),
        ("{{ profile['not a column'] }}", "not a column name"),
        ("{% include campaign.id ~ '.html' %}", "computed"),
        ("{{ profile.items }}", r"dict method; write profile\['items'\]"),
    ],
)
def test_referenced_fields_refuses_what_it_cannot_name(tmp_path: Path, source: str, message: str) -> None:
    write(tmp_path, {"t/body.html": source})
    with pytest.raises(TemplateCheckError, match=message):
        referenced_fields(template_environment(tmp_path), ["t/body.html"])


def test_check_templates_reports_syntax_errors_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.txt": "line one\n{% if profile.x %}unclosed"})
    with pytest.raises(TemplateCheckError, match=r"t/body.txt:2: "):
        check_templates(template_environment(tmp_path), ["t/body.txt"])


def test_unsubscribe_url_is_a_known_name(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.html": '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'})
    env = template_environment(tmp_path)
    assert check_templates(env, ["t/body.html"]) == ()
    assert render(tmp_path, "t/body.html") == (
        '<a href="https://campaigns.example.com/campaigns-unsubscribe/unsubscribe/t.s">Unsubscribe</a>'
    )
