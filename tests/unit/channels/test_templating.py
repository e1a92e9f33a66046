from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.filters import do_urlencode
from markupsafe import Markup

from campaign_orchestrator.channels.templating import (
    TemplateCheckError,
    check_template_fields,
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


def test_templates_see_jinja_globals_with_the_sandbox_range(tmp_path: Path) -> None:
    write(tmp_path, {
        "t/body.txt": "{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}"
        "{{ ns.n }} {{ dict(a=1).a }} {{ cycler('x', 'y').next() }} {{ joiner()() }}.",
        "t/huge.txt": "{{ range(10 ** 7) | length }}",
    })
    assert render(tmp_path, "t/body.txt") == "6 1 x ."
    with pytest.raises(OverflowError):  # the sandbox's range(), not the builtin
        render(tmp_path, "t/huge.txt")


@settings(max_examples=1000, deadline=None)
@given(st.one_of(
    st.text(),
    st.text(alphabet=st.characters(max_codepoint=127)),
    st.text().map(Markup),
    st.integers(),
    st.none(),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
    st.lists(st.tuples(st.text(max_size=5), st.integers())),
))
def test_urlencode_filter_is_jinjas(value: object) -> None:
    urlencode = template_environment(Path(__file__).parent).filters["urlencode"]
    assert urlencode(value) == do_urlencode(value)


def test_urlencode_in_templates(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.html": "<a href='/p?m={{ message.id | urlencode }}&c={{ campaign.id | urlencode }}'>"})
    rendered = render(tmp_path, "t/body.html", campaign={"id": "été/x y"})
    assert rendered == "<a href='/p?m=%3Cm%40x%3E&c=%C3%A9t%C3%A9/x%20y'>"


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
    with pytest.raises(TemplateCheckError, match=r"t/body.txt:\d+: unknown name 'user'"):
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
    with pytest.raises(TemplateCheckError, match=r"_footer.html:\d+: unknown name 'preferences_url'"):
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


def test_entity_paths_are_read_from_the_template(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.txt": (
        "{{ entity.starts_on.strftime('%d %B') }} {{ entity.product.name | upper }} {{ entity['status'] }}"
        "{{ entity.get('amount', 0) }}{% if entity.product.inventory.quantity < 5 %}few{% endif %}"
        "{{ profile.first_name }}"
    )})
    fields = check_template_fields(template_environment(tmp_path), ["t/body.txt"])
    assert fields.profile == ("first_name",)
    # which segment is a link and which the column is decided against the catalog later
    assert fields.entity == (
        ("amount",), ("product", "inventory", "quantity"), ("product", "name"), ("starts_on", "strftime"), ("status",)
    )
    assert fields.entities == () and not fields.uses_entities


def test_entities_paths_come_from_loops_indexes_and_counts(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.txt": (
        "{% if entities %}{{ entities|length }} trips:{% endif %}"
        "{% for b in entities if b.status == 'confirmed' %}{{ loop.index }}. {{ b.product.name }} {{ b.starts_on }}"
        "{% for i in range(2) %}{{ i }}{% endfor %}{% else %}none{% endfor %}"
        "{% for b in entities[:3] %}{{ b.amount }}{% endfor %}{{ entities[0].booked_at }}"
    )})
    fields = check_template_fields(template_environment(tmp_path), ["t/body.txt"])
    assert fields.entities == (("amount",), ("booked_at",), ("product", "name"), ("starts_on",), ("status",))
    assert fields.uses_entities and not fields.uses_entity
    write(tmp_path, {"t/count.txt": "You have {{ entities|length }} bookings"})
    counted = check_template_fields(template_environment(tmp_path), ["t/count.txt"])
    assert counted.uses_entities and counted.entities == ()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ entity }}", "uses 'entity' as a whole"),
        ("{% set e = entity %}{{ e.x }}", "uses 'entity' as a whole"),
        ("{{ entities }}", "uses 'entities' as a whole.*loop over entities"),
        ("{% for b in entities|sort(attribute='starts_on') %}{% endfor %}", "entities_order_by orders it"),
        ("{% for b in entities %}{{ b }}{% endfor %}", "uses an item of entities as a whole"),
        ("{% for b in entities %}{% for c in b.product %}{% endfor %}{% endfor %}", None),
        ("{{ entities.first_name }}", "entities is a list"),
        ("{{ entity.items }}", r"entity.items is a dict method; write \['items'\]"),
        ("{{ entity['not a column'] }}", "is not a column name"),
        ("{% for a, b in entities %}{% endfor %}", "loop over entities with one name"),
    ],
)
def test_entity_used_in_ways_a_send_cannot_fetch_is_an_error(tmp_path: Path, source: str, message: str | None) -> None:
    write(tmp_path, {"t/body.txt": source})
    env = template_environment(tmp_path)
    if message is None:  # an entity path the catalog will judge (b.product as a whole is refused there)
        assert check_template_fields(env, ["t/body.txt"]).entities == (("product",),)
        return
    with pytest.raises(TemplateCheckError, match=message):
        check_template_fields(env, ["t/body.txt"])


def test_entity_and_entities_render_nested_fields(tmp_path: Path) -> None:
    write(tmp_path, {"t/body.html": (
        "{{ entity.product.name }}|{% for b in entities %}{{ b.product.name }};{% endfor %}"
    )})
    out = render(tmp_path, "t/body.html", entity={"product": {"name": "<Cruise>"}},
                 entities=[{"product": {"name": "A&B"}}, {"product": {"name": "C"}}])
    assert out == "&lt;Cruise&gt;|A&amp;B;C;"
