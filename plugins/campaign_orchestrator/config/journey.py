"""The step graph of a campaign: which step follows which, checked before any DAG is built.

A step with no ``after`` starts from the audience; ``after: [a]`` follows ``a``; two steps
after the same one fork the branch; a step after several joins them. Conditions (``when``)
may only look at message steps upstream of the step, because only those have outcomes by
the time it is targeted.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from campaign_orchestrator.config.steps import WaitStep, WaitUntil

if TYPE_CHECKING:
    # Type-only: config/campaign.py imports this module to check the graph it validates.
    from campaign_orchestrator.config.campaign import CampaignConfig
    from campaign_orchestrator.config.channels import Step


def check_journey(config: CampaignConfig) -> None:
    """Raise ValueError naming ``steps[i].field`` for unknown references, cycles, conditions
    on steps that are not upstream, and misplaced segments or waits."""
    index = {step.id: i for i, step in enumerate(config.steps)}
    for i, step in enumerate(config.steps):
        for ref in step.after:
            if ref == step.id:
                raise ValueError(f"steps[{i}].after: step {step.id!r} cannot follow itself")
            if ref not in index:
                raise ValueError(f"steps[{i}].after: unknown step {ref!r}{_did_you_mean(ref, index)}")
    cycle = find_cycle(config)
    if cycle:
        raise ValueError(
            f"steps[{index[cycle[0]]}].after: the steps form a cycle ({' -> '.join(cycle)}); "
            "a campaign's steps must flow one way"
        )
    for i, step in enumerate(config.steps):
        upstream = ancestors(config, step.id)
        for c, condition in enumerate(getattr(step, "when", ())):
            where = f"steps[{i}].when[{c}]"
            if condition.converted is not None:
                if config.conversion is None:
                    raise ValueError(
                        f"{where}: a converted condition needs the campaign's conversion table, e.g. "
                        "conversion: {table: crm.booking, profile_column: profile_id, time_column: created_at}"
                    )
                continue
            ref = condition.step
            if ref not in index:
                raise ValueError(f"{where}.step: unknown step {ref!r}{_did_you_mean(ref, index)}")
            if isinstance(config.steps[index[ref]], WaitStep):
                raise ValueError(f"{where}.step: {ref!r} is a wait; conditions look at message steps' outcomes")
            if ref not in upstream:
                raise ValueError(
                    f"{where}.step: {ref!r} is not before step {step.id!r}; add it (or a step after it) "
                    f"to steps[{i}].after"
                )
        if step.after and getattr(step, "segment", None) is not None:
            raise ValueError(
                f"steps[{i}].segment: only a step that starts from the audience picks a segment; "
                "steps after it inherit who came through"
            )
        untils = [ref for ref in step.after if _is_wait_until(config.steps[index[ref]])]
        if untils and (isinstance(step, WaitStep) or len(step.after) > 1):
            raise ValueError(
                f"steps[{i}].after: a wait until a time of day ({untils[0]}) must be the only step before "
                "a message step: each recipient's message is timed by it"
            )


def _is_wait_until(step: Step) -> bool:
    return isinstance(step, WaitStep) and isinstance(step.wait, WaitUntil)


def _did_you_mean(name: str, known: dict[str, int]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; steps: {', '.join(known)}"


def find_cycle(config: CampaignConfig) -> list[str] | None:
    """A cycle as a path of step ids (first == last), or None."""
    after = {step.id: list(step.after) for step in config.steps}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for ref in after.get(node, ()):
            if state.get(ref) == 1:
                return path[path.index(ref):] + [ref]
            if ref not in state:
                found = visit(ref)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for step_id in after:
        if step_id not in state:
            found = visit(step_id)
            if found:
                return list(reversed(found))
    return None


def ancestors(config: CampaignConfig, step_id: str) -> set[str]:
    """Every step upstream of ``step_id`` (through ``after``), not including itself."""
    after = {step.id: step.after for step in config.steps}
    seen: set[str] = set()
    pending = list(after.get(step_id, ()))
    while pending:
        ref = pending.pop()
        if ref in seen or ref not in after:
            continue
        seen.add(ref)
        pending.extend(after[ref])
    return seen


def in_flow_order(config: CampaignConfig) -> list[Step]:
    """The steps, each after everything it follows (file order among equals)."""
    placed: set[str] = set()
    ordered: list[Step] = []
    remaining = list(config.steps)
    while remaining:
        ready = [s for s in remaining if all(ref in placed for ref in s.after)]
        if not ready:  # a cycle; check_journey reports it
            raise ValueError("the steps form a cycle")
        for step in ready:
            ordered.append(step)
            placed.add(step.id)
        remaining = [s for s in remaining if s.id not in placed]
    return ordered


def is_journey(config: CampaignConfig) -> bool:
    """True when any step follows another (the campaign is more than parallel sends)."""
    return any(step.after for step in config.steps)


__all__ = ["ancestors", "check_journey", "find_cycle", "in_flow_order", "is_journey"]
