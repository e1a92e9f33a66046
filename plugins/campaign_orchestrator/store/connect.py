"""Open psycopg connections to the campaign store, the way every task and command does."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

APPLICATION_NAME = "campaign-orchestrator"


def store_conninfo(with_password: bool = False) -> str:
    """The store's libpq connection string (the embedded server's socket, or the
    ``campaign_store`` connection), e.g. for psql; the password only when asked for."""
    from psycopg.conninfo import make_conninfo

    with store_connection() as conn:
        params = {k: v for k, v in conn.info.get_parameters().items() if k in ("host", "port", "user", "dbname")}
        if with_password and conn.info.password:
            params["password"] = conn.info.password
    return make_conninfo(**params)


def store_connection(conn_id: str | None = None) -> psycopg.Connection:
    """An autocommit connection: statements commit alone, ``conn.transaction()`` groups them."""
    from campaign_orchestrator.store.hook import STORE_CONN_ID, CampaignStoreHook

    hook = CampaignStoreHook(postgres_conn_id=conn_id or STORE_CONN_ID)
    conn = hook.get_conn()
    conn.autocommit = True
    return conn  # type: ignore[return-value]
