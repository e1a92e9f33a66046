"""Open psycopg connections to the campaign store, the way every task and command does."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

APPLICATION_NAME = "campaign-orchestrator"


def store_connection(conn_id: str | None = None) -> psycopg.Connection:
    """An autocommit connection: statements commit alone, ``conn.transaction()`` groups them."""
    from campaign_orchestrator.store.hook import STORE_CONN_ID, CampaignStoreHook

    hook = CampaignStoreHook(postgres_conn_id=conn_id or STORE_CONN_ID)
    conn = hook.get_conn()
    conn.autocommit = True
    return conn  # type: ignore[return-value]
