"""Enrichment plans from template paths and the entity catalog (no store needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign_orchestrator.audience.catalog import load_catalog
from campaign_orchestrator.channels.templating import TemplateFields
from campaign_orchestrator.config.campaign import CampaignConfig
from campaign_orchestrator.run.enrichment import Enrichment, EnrichmentError, enrichment_for, plan_fields

CATALOG = load_catalog(Path(__file__).resolve().parents[3] / "include" / "entities.yaml")
EMAIL = {"id": "mail", "channel": "email", "template": "t", "sender": "W <w@w.example>"}


def campaign(audience: dict, **step) -> CampaignConfig:
    return CampaignConfig.model_validate({
        "id": "c", "schedule": "manual", "valid": {"start": "2026-01-01"}, "audience": audience,
        "steps": [{**EMAIL, **step}],
    })


def test_forward_and_reverse_one_to_one_links_nest_and_the_rest_are_columns() -> None:
    plan = plan_fields(CATALOG, "booking", [
        ("starts_on", "strftime"), ("product", "name"), ("product", "inventory", "quantity"), ("profile", "city"),
    ], "entity")
    assert (plan.entity, plan.columns) == ("booking", ("starts_on",))
    joins = {j.name: j for j in plan.joins}
    assert (joins["product"].parent_column, joins["product"].child_column) == ("product_id", "product_id")
    assert joins["product"].node.columns == ("name",)
    inventory = joins["product"].node.joins[0]
    # inventory is keyed by the product_id it links with: one row per product at most
    assert (inventory.name, inventory.node.table, inventory.node.columns) == ("inventory", "crm.inventory", ("quantity",))
    assert joins["profile"].node.path == ("profile",)


def test_the_select_names_only_the_referenced_columns() -> None:
    plan = plan_fields(CATALOG, "booking", [("starts_on",), ("product", "name")], "entity")
    columns, joins = Enrichment(plan, "entity")._select()
    assert columns.as_string(None) == ', "e0"."starts_on" AS "c0", "e1"."name" AS "c1"'
    assert joins.as_string(None) == 'LEFT JOIN "crm"."product" AS "e1" ON "e1"."product_id" = "e0"."product_id"'


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ([("product",)], "entity.product is the linked entity product as a whole; name its fields, e.g. "
                         "entity.product.product_id"),
        ([("product", "booking", "amount")], "entity.product.booking: one product has many booking rows"),
    ],
)
def test_links_a_template_cannot_show_as_one_value_are_refused(paths, message: str) -> None:
    with pytest.raises(EnrichmentError, match=message):
        plan_fields(CATALOG, "booking", paths, "entity")


BOOKINGS = {"b": {"from": "booking", "where": {"status": "confirmed"}, "entity_key": "booking"}}


def test_a_step_gets_entity_or_entities_by_message_per() -> None:
    config = campaign({"blocks": BOOKINGS})
    enrichment = enrichment_for(config, config.steps[0], TemplateFields(entity=(("product", "name"),)), CATALOG)
    assert enrichment is not None and enrichment.per == "entity" and enrichment.profile_column == "profile_id"
    listing = campaign({"blocks": BOOKINGS}, message_per="profile", entities_order_by="starts_on desc", max_entities=4)
    fields = TemplateFields(entities=(("starts_on",),), uses_entities=True)
    enrichment = enrichment_for(listing, listing.steps[0], fields, CATALOG)
    assert enrichment is not None
    assert (enrichment.per, enrichment.order_by, enrichment.max_entities) == ("profile", (("starts_on", True),), 4)
    assert enrichment_for(config, config.steps[0], TemplateFields(profile=("first_name",)), CATALOG) is None


@pytest.mark.parametrize(
    ("audience", "step", "fields", "message"),
    [
        ({"blocks": BOOKINGS}, {"message_per": "profile"}, TemplateFields(entity=(("starts_on",),)),
         r"steps\[0\].template: t uses entity, but the step sends one message per profile"),
        ({"blocks": BOOKINGS}, {}, TemplateFields(entities=(("starts_on",),), uses_entities=True),
         "uses entities .* only a step with message_per: profile gets"),
        ({"blocks": {"s": {"sql": "audiences/by_ids.sql", "returns_entity_key": True}}}, {},
         TemplateFields(entity=(("starts_on",),)), "audience.entity: .* set audience.entity"),
        ({"blocks": {"p": {"from": "profile"}}}, {}, TemplateFields(entity=(("starts_on",),)),
         "the audience has no entity keys; give a block entity_key"),
        ({"blocks": {**BOOKINGS, "p": {"from": "profile"}}}, {}, TemplateFields(entity=(("starts_on",),)),
         "audience.blocks.p: its members carry no entity key"),
        ({"blocks": {"s": {"sql": "audiences/by_ids.sql", "returns_entity_key": True}}, "entity": "booking"}, {},
         TemplateFields(entity=(("product",),)), r"steps\[0\].template: t: entity.product is the linked entity"),
        ({"blocks": {"s": {"sql": "audiences/by_ids.sql", "returns_entity_key": True}}, "entity": "voyage"}, {},
         TemplateFields(entity=(("name",),)), "audience.entity: unknown entity 'voyage'"),
    ],
)
def test_what_a_step_cannot_have_is_named(audience, step, fields, message: str) -> None:
    config = campaign(audience, **step)
    with pytest.raises(EnrichmentError, match=message):
        enrichment_for(config, config.steps[0], fields, CATALOG)
