"""Where the project's folders are: dags/, include/sql/, include/templates/.

The package lives in ``plugins/`` of the project (installed editable into the virtualenv,
mounted as ``/opt/airflow/plugins`` in containers), so the project root is two levels up.
``CAMPAIGNS_HOME`` overrides it, e.g. to point the CLI at another checkout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @classmethod
    def discover(cls) -> ProjectPaths:
        env = os.environ.get("CAMPAIGNS_HOME")
        return cls(Path(env).resolve() if env else Path(__file__).resolve().parents[2])

    @property
    def dags(self) -> Path:
        return self.root / "dags"

    @property
    def campaigns(self) -> Path:
        return Path(os.environ.get("CAMPAIGNS_CONFIG_DIR", self.dags / "campaigns"))

    @property
    def ingestion(self) -> Path:
        """Ingestion sources (``dags/ingestion/*.yaml``), or ``$CAMPAIGNS_INGESTION_DIR``."""
        return Path(os.environ.get("CAMPAIGNS_INGESTION_DIR", self.dags / "ingestion"))

    @property
    def sql(self) -> Path:
        return self.root / "include" / "sql"

    @property
    def migrations(self) -> Path:
        return self.sql / "migrations"

    @property
    def templates(self) -> Path:
        return self.root / "include" / "templates"
