"""The step graph of a multi-step campaign is checked before any DAG is built: every error
names the file, the line and the field, and says how to fix it."""

from __future__ import annotations

import pytest

from campaign_orchestrator.config.journey import ancestors, in_flow_order
from tests.unit.config.test_loader import VALID, load, only_error, project, write  # noqa: F401  (fixture)

STEPS = """
  - id: follow_up
    channel: email
    template: spring
    sender: "Acme <news@acme.example>"
"""


def journey(*extra: str, conversion: bool = False) -> str:
    text = VALID + "".join(extra)
    if conversion:
        text += "conversion: {table: crm.booking, time_column: booked_at}\n"
    return text


def step(step_id: str, lines: str) -> str:
    return STEPS.replace("follow_up", step_id).rstrip("\n") + "\n" + "".join(f"    {line.strip()}\n" for line in lines.split(";"))


def test_a_three_step_journey_loads_in_flow_order(project) -> None:
    write(project, "spring_sale.yaml", journey(
        "  - {id: wait_2d, wait: 2d, after: offer}\n",
        step("nudge", "after: wait_2d; when: {step: offer, outcome: not_opened}"),
        "  - {id: morning, wait: {until: '09:00'}, after: nudge}\n",
        step("last_call", "after: morning; when: [{converted: false}]"),
        conversion=True,
    ))
    result = load(project)
    assert result.ok, [e.render() for e in result.errors]
    config = result.configs["spring_sale"][1]
    assert [s.id for s in in_flow_order(config)] == ["offer", "wait_2d", "nudge", "morning", "last_call"]
    assert [s.id for s in config.message_steps] == ["offer", "nudge", "last_call"]
    assert ancestors(config, "last_call") == {"offer", "wait_2d", "nudge", "morning"}
    assert config.step("wait_2d").wait.total_seconds() == 2 * 86400
    assert config.step("morning").wait.until == "09:00" and config.step("morning").wait.timezone == "recipient"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (step("nudge", "after: ofer"), "spring_sale.yaml:22: steps[1].after: unknown step 'ofer'; did you mean 'offer'?"),
        (step("nudge", "after: nudge"), "steps[1].after: step 'nudge' cannot follow itself"),
        (step("nudge", "when: {step: offer, outcome: opened}"),
         "steps[1].when[0].step: 'offer' is not before step 'nudge'; add it (or a step after it) to steps[1].after"),
        (step("nudge", "after: offer; when: {step: offr, outcome: opened}"),
         "steps[1].when[0].step: unknown step 'offr'; did you mean 'offer'?"),
        (step("nudge", "after: offer; when: {converted: false}"),
         "steps[1].when[0]: a converted condition needs the campaign's conversion table"),
        (step("nudge", "after: offer; when: {step: offer, outcome: read}"), "steps[1].when[0].outcome:"),
        (step("nudge", "after: offer; when: {step: offer}"), "a condition needs step and outcome"),
        ("  - {id: pause, wait: 2 days, after: offer}\n", "steps[1].wait: '2 days' is not a duration"),
        ("  - {id: pause, wait: {until: '9am'}, after: offer}\n", "steps[1].wait.until:"),
        ("  - {id: pause, wait: 1d}\n", "steps[1].after: required field is missing"),
        ("  - {id: fax, template: spring}\n", "steps[1].channel: a step needs a channel"),
        ("  - {id: pause, wait: {until: '09:00'}, after: offer}\n  - {id: pause2, wait: 1h, after: pause}\n",
         "steps[2].after: a wait until a time of day (pause) must be the only step before a message step"),
    ],
)
def test_a_broken_step_graph_is_an_error_naming_the_field(project, extra: str, expected: str) -> None:
    write(project, "spring_sale.yaml", journey(extra))
    assert expected in only_error(project)


def test_a_cycle_is_an_error_showing_the_loop(project) -> None:
    write(project, "spring_sale.yaml", journey(
        step("a", "after: c"), step("b", "after: a"), step("c", "after: b"),
    ))
    error = only_error(project)
    assert "steps[1].after: the steps form a cycle (a -> b -> c -> a)" in error


def test_only_a_first_step_picks_a_split_segment(project) -> None:
    text = journey(step("nudge", "after: offer; segment: b")).replace(
        "  params: {days: 30}\n", "  params: {days: 30}\n  split: {segments: {a: 50, b: 50}}\n")
    write(project, "spring_sale.yaml", text)
    assert "steps[1].segment: only a step that starts from the audience picks a segment" in only_error(project)
