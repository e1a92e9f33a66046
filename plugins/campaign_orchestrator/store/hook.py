"""The campaign store connection: an Airflow Connection, or the embedded server as fallback."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk.exceptions import AirflowNotFoundException

from campaign_orchestrator.store.embedded import ENV_VAR, embedded_store_dir, start_embedded_store

if TYPE_CHECKING:
    from airflow.sdk import Connection

STORE_CONN_ID = "campaign_store"


class CampaignStoreHook(PostgresHook):
    """PostgreSQL hook for the campaign store (connection id ``campaign_store``).

    When that connection is not configured and ``CAMPAIGNS_EMBEDDED_STORE`` names a data
    folder, the hook starts or attaches to the embedded PostgreSQL there instead. Without
    either, it fails with the connection-not-found error and says how to configure one.
    """

    default_conn_name = STORE_CONN_ID
    hook_name = "Campaign store (PostgreSQL)"

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("postgres_conn_id", STORE_CONN_ID)
        super().__init__(*args, **kwargs)

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        try:
            return super().get_connection(conn_id)
        except AirflowNotFoundException as exc:
            data_dir = embedded_store_dir()
            if conn_id != STORE_CONN_ID or data_dir is None:
                raise AirflowNotFoundException(
                    f"{exc}. Configure the campaign store as an Airflow connection, e.g. "
                    f"AIRFLOW_CONN_CAMPAIGN_STORE='postgresql://user:pass@host:5432/db', or set "
                    f"{ENV_VAR}=/path/to/folder to use an embedded PostgreSQL."
                ) from exc
            from airflow.sdk import Connection

            args = start_embedded_store(data_dir)
            return Connection(
                conn_id=conn_id,
                conn_type="postgres",
                host=args["host"],
                login=args["user"],
                schema=args["dbname"],
                port=int(args["port"]),
                extra=json.dumps({}),
            )
