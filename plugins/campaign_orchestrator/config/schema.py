"""JSON Schema of campaign files, for editors (YAML language server) and CI linting."""

from __future__ import annotations

from typing import Any

from campaign_orchestrator.config.campaign import CampaignConfig

SCHEMA_ID = "https://github.com/airflow-campaign-orchestrator/campaign.schema.json"


def campaign_json_schema() -> dict[str, Any]:
    schema = CampaignConfig.model_json_schema(mode="validation")
    # A campaign file may omit id (it defaults to the file name) and anything _defaults.yaml sets.
    schema["required"] = [name for name in schema.get("required", []) if name not in ("id",)]
    schema["properties"]["schedule"] = {
        "description": "A cron expression ('0 9 * * 1'), a preset ('@daily'), 'manual', or {once: <datetime>}",
        "anyOf": [{"type": "string", "examples": ["0 9 * * 1", "@daily", "manual"]}, {"$ref": "#/$defs/Schedule"}],
    }
    schema["properties"]["retry_delay"] = {
        "description": "e.g. '30s', '5m', '2h', '1d', or a number of seconds",
        "anyOf": [{"type": "string", "pattern": r"^\s*\d+\s*[smhd]\s*$"}, {"type": "number", "minimum": 0}],
    }
    schema["properties"]["send_window"] = {
        "description": "Messages not sent this long after the run started are excluded; null: no window",
        "anyOf": [*schema["properties"]["retry_delay"]["anyOf"], {"type": "null"}],
    }
    schema["properties"]["late_run_tolerance"] = {
        "description": "A scheduled run starting later than this after its time is skipped; null: always send",
        "anyOf": [*schema["properties"]["retry_delay"]["anyOf"], {"type": "null"}],
    }
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
