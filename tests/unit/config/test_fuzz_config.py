"""Property-based fuzzing of campaign files: any input gives errors naming the file and the
field, or a valid config that builds its DAG; never an exception; the other campaigns load.

Inputs are mutations of the project's own campaign files (``dags/campaigns/*.yaml``): values
replaced by other types, odd strings, bad durations, cron expressions, time zones and dates;
keys deleted or invented; and the YAML text itself broken (characters inserted, deleted or
replaced, lines cut). Each mutated file is loaded beside a valid campaign through the same
entry point as ``dags/campaigns_dag.py`` (:func:`build_dags`). Derandomized: the same
examples every run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaign_orchestrator.config.loader import DEFAULTS_FILE, campaign_files, load_campaigns
from campaign_orchestrator.dag_factory import INVALID_TAG, build_dags
from campaign_orchestrator.paths import ProjectPaths

PATHS = ProjectPaths.discover()
COMPANION = "companion_campaign"
FUZZED = "zz_fuzzed.yaml"  # sorts after the companion: a clash of ids is the fuzzed file's error


def _valid_bases() -> dict[str, str]:
    """The project's campaign files that load (mutations start from valid input)."""
    result = load_campaigns(PATHS.campaigns, PATHS)
    return {path.name: path.read_text(encoding="utf-8") for _, (path, _) in sorted(result.configs.items())}


BASES = _valid_bases()
DEFAULTS = yaml.safe_load((PATHS.campaigns / DEFAULTS_FILE).read_text(encoding="utf-8")) or {}

ODD_STRINGS = [
    "", " ", "\t", "null", "~", "yes", "0", "-1", "1e309", "NaN", "∞", "🙂", "Ωmega", "a" * 300,
    "0 9 * *", "61 25 * * *", "* * * * * *", "@fortnightly", "@daily", "manual", "0 9 * * MON-FRI",
    "Mars/Olympus", "../../etc/passwd", "Europe/Paris ", "UTC\x00", "utc", "+02:00",
    "5x", "-5m", "1w", "P", "PT", "P1Y", "PT-5M", "10 s", "99999999999d", "0s",
    "2026-13-45", "2026-02-30", "9999-12-31T99:99", "1970-01-01", "2026-12-01T09:00:00+25:00",
    "%(x)s", "{{ 7*7 }}", "'; DROP TABLE crm.profile; --", "<script>x</script>",
    "audiences/../../../etc/passwd.sql", "/abs/path.sql", "email", "sms", "pigeon", "ses", "smtp",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(ODD_STRINGS),
    st.dates().map(str),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=8), SCALARS, max_size=2),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a node of the parsed YAML tree (the root excluded)."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _parent(tree: Any, path: tuple) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


@st.composite
def tree_mutation(draw: st.DrawFn, text: str) -> str:
    """One to three edits of the parsed file: replace, delete, invent a key, wrap in a list."""
    tree = yaml.safe_load(text)
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(tree, (dict, list)) or not tree:
            break
        path = draw(st.sampled_from(_paths(tree)))
        parent, key = _parent(tree, path), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "invent", "wrap"]))
        if action == "replace":
            parent[key] = draw(VALUES)
        elif action == "delete":
            del parent[key]
        elif action == "wrap":
            parent[key] = [parent[key]]
        else:
            target = parent[key] if isinstance(parent[key], dict) else parent if isinstance(parent, dict) else tree
            if isinstance(target, dict):
                name = draw(st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(
                    ["ownr", "shedule", "chanel", "templates", "batchsize", "id", "steps", "wait", "after"])))
                target[name] = draw(VALUES)
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)


@st.composite
def text_mutation(draw: st.DrawFn, text: str) -> str:
    """Edits of the YAML text itself: most of them break the YAML."""
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "indent"]))
        if action == "insert":
            text = text[:at] + draw(st.one_of(st.text(max_size=8), st.sampled_from(
                [":", ": :", "{", "[", "]", "&a", "*a", "!!python/object:os.system", "\t", "- ", "'", '"', "|", "%"]
            ))) + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif action == "replace" and at < len(text):
            text = text[:at] + draw(st.characters()) + text[at + 1:]
        elif action == "truncate":
            text = text[:at]
        else:
            line_start = text.rfind("\n", 0, at) + 1
            text = text[:line_start] + draw(st.sampled_from([" ", "  ", "\t"])) + text[line_start:]
    return text


@st.composite
def mutated_campaign(draw: st.DrawFn) -> str | bytes:
    text = BASES[draw(st.sampled_from(sorted(BASES)))]
    return draw(st.one_of(
        tree_mutation(text),
        text_mutation(text),
        st.text(max_size=200),
        # Saved in another encoding, or not text at all.
        text_mutation(text).map(lambda t: t.encode("utf-16") if "é" in t else (t + "é").encode("latin-1", "replace")),
        st.binary(max_size=200),
    ))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A campaigns folder: the project's defaults and one valid companion campaign."""
    path = tmp_path_factory.mktemp("campaigns")
    shutil.copy(PATHS.campaigns / DEFAULTS_FILE, path / DEFAULTS_FILE)
    companion = yaml.safe_load(BASES[sorted(BASES)[0]])
    companion["id"] = COMPANION
    companion["schedule"] = "manual"  # it must not follow a campaign absent from this folder
    (path / "companion.yaml").write_text(yaml.safe_dump(companion, sort_keys=False))
    return path


# file:line: field.path: message  (line optional; "(file)" when the whole file is at fault)
_PROBLEM = re.compile(r"^(?P<file>[^\n]+?\.yaml)(?::(?P<line>\d+))?: (?P<field>.+?): (?P<message>.+)$", re.DOTALL)
_WHOLE_FILE = ("not valid YAML", "must be a mapping", "not UTF-8 text", "file is empty")


def _named_in_file(field: str, text: str | bytes, defaults: dict[str, Any]) -> bool:
    """A field path goes through the file's own keys (or the defaults'): it may end at a key
    the file lacks (a missing field), but never continues past a plain value."""
    try:
        tree = yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - unparsable input is checked elsewhere
        return True
    tree = {} if tree is None else tree  # an empty file is an empty mapping
    current: Any = {**defaults, **tree} if isinstance(tree, dict) else tree
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field):
        key: Any = int(index) if index else name
        if isinstance(current, dict):
            if key not in current:
                return True
            current = current[key]
        elif isinstance(current, list) and isinstance(key, int) and key < len(current):
            current = current[key]
        else:
            return False
    return True


def _coerced_booleans(text: str | bytes, config: Any) -> list[tuple]:
    """Paths where the file says true/false and the config holds something else (1, 0.0):
    a silently different campaign."""
    found, pending = [], [((), yaml.safe_load(text), config.model_dump(by_alias=True))]
    while pending:
        path, raw, kept = pending.pop()
        if isinstance(raw, bool):
            if not isinstance(kept, bool):
                found.append((path, raw, kept))
        elif isinstance(raw, dict) and isinstance(kept, dict):
            pending.extend(((*path, k), v, kept[k]) for k, v in raw.items() if k in kept)
        elif isinstance(raw, list) and isinstance(kept, list) and len(raw) == len(kept):
            pending.extend(((*path, i), v, kept[i]) for i, v in enumerate(raw))
    return found


def check(folder: Path, text: str | bytes) -> str:
    """Load ``text`` as a campaign beside the companion; assert the outcome; return its kind."""
    fuzzed = folder / FUZZED
    if isinstance(text, bytes):
        fuzzed.write_bytes(text)
    else:
        fuzzed.write_text(text, encoding="utf-8")
    namespace: dict[str, Any] = {}
    result = build_dags(namespace, folder)  # the DAG file's own call: must never raise

    assert COMPANION in result.configs  # the other campaign still loads
    assert namespace[f"campaign_{COMPANION}"].dag_id == COMPANION
    mine = [config for path, config in result.configs.values() if path == fuzzed]
    errors = [error for error in result.errors if error.path == fuzzed]
    assert len(mine) + len(errors) == 1, (mine, errors)
    if mine:
        config = mine[0]
        dag = namespace[f"campaign_{config.id}"]
        assert dag.dag_id == config.id and INVALID_TAG not in dag.tags
        dag.validate()  # what Airflow's DagBag checks before accepting a DAG (timetable included)
        assert not _coerced_booleans(text, config)
        tasks = set(dag.task_dict)
        assert {"prepare_run", "evaluate_audience", "finalize_report"} <= tasks
        assert {f"target_{step.id}" for step in config.message_steps} <= tasks
        return "valid"
    (error,) = errors
    assert error.problems, "an error without problems"
    for problem in error.problems:
        rendered = problem.render(fuzzed)
        match = _PROBLEM.match(rendered)
        assert match and match["file"] == str(fuzzed), rendered
        assert match["field"] != "(file)" or problem.message.startswith(_WHOLE_FILE), rendered
        assert problem.message.strip() and "Traceback" not in problem.message, rendered
        assert match["field"] == "(file)" or _named_in_file(problem.field, text, DEFAULTS), rendered
    placeholder = namespace[f"invalid_campaign_{error.campaign_id}"]
    assert INVALID_TAG in placeholder.tags and placeholder.dag_id == error.campaign_id
    return "error"


@settings(
    max_examples=200, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=mutated_campaign())
def test_any_campaign_file_gives_a_dag_or_errors_naming_file_and_field(folder: Path, text: str) -> None:
    check(folder, text)


def test_the_bases_are_the_projects_campaigns() -> None:
    assert set(BASES) == {p.name for p in campaign_files(PATHS.campaigns)}


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda c: c.update(batch_size="lots"), "batch_size"),
        (lambda c: c.update(batch_size=True), "batch_size"),
        (lambda c: c.update(guardrails={"max_error_rate": False}), "guardrails.max_error_rate"),
        (lambda c: c.update(retry_delay="1w"), "retry_delay"),
        (lambda c: c.update(timezone="Mars/Olympus"), "timezone"),
        (lambda c: c.update(timezone="UTC\x00"), "timezone"),
        (lambda c: c.update(schedule="61 25 * * *"), "schedule"),
        (lambda c: c.update(schedule={"cron": "0 9 * * 8"}), "schedule.cron"),
        (lambda c: c.update(id="Hello World"), "id"),
        (lambda c: c.update(valid={"start": "2026-13-45"}), "valid.start"),
        (lambda c: c["steps"][0].update(channel="pigeon"), "steps[0].channel"),
        (lambda c: c["steps"][0].update(channel=["email"]), "steps[0].channel"),
        (lambda c: c["steps"][0].pop("template"), "steps[0].template"),
        (lambda c: c.update(steps="offer_email"), "steps"),
        (lambda c: c.update(ownr="me"), "ownr"),
    ],
)
def test_known_bad_inputs_name_their_field(folder: Path, edit, field: str) -> None:
    """A few mutations the fuzzing is meant to find, spelled out: each names its field."""
    config = yaml.safe_load(BASES["winter_sale.yaml"]) if "winter_sale.yaml" in BASES else yaml.safe_load(
        BASES[sorted(BASES)[0]])
    edit(config)
    assert check(folder, yaml.safe_dump(config, allow_unicode=True, sort_keys=False)) == "error"
    result = load_campaigns(folder, PATHS)
    (error,) = [e for e in result.errors if e.path.name == FUZZED]
    assert field in {p.field for p in error.problems}, error.render()


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        (b"id: x\nvalid: {start: 2026-02-30}\n", "valid.start", "'2026-02-30' is not a valid date or time"),
        ("descripci\u00f3n: \u00e9t\u00e9\n".encode("latin-1"), "(file)", "not UTF-8 text (byte 9"),
        (b"id: [unclosed\n", "(file)", "not valid YAML"),
        (b"- just\n- a list\n", "(file)", "must be a mapping of campaign fields"),
    ],
)
def test_files_yaml_cannot_read_name_the_file_and_what_to_fix(
    folder: Path, content: bytes, field: str, message: str
) -> None:
    assert check(folder, content) == "error"
    (error,) = [e for e in load_campaigns(folder, PATHS).errors if e.path.name == FUZZED]
    assert any(p.render(error.path).startswith(f"{error.path}") and (p.field or "(file)") == field
               and message in p.message for p in error.problems), error.render()
    assert error.campaign_id == "zz_fuzzed"  # the placeholder DAG is named after the file
