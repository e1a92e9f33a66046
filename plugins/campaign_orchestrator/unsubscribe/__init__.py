"""One-click unsubscribe (RFC 8058): signed links in marketing emails and the endpoint behind them.

- :mod:`.tokens`: signed, expiring tokens and the ``List-Unsubscribe`` headers;
- :mod:`.service`: the consent change;
- :mod:`.app`: the FastAPI app, mounted by the api-server through
  ``plugins/unsubscribe_plugin.py`` at :data:`URL_PREFIX`, or served alone
  (``python -m campaign_orchestrator.unsubscribe.app``).

Airflow imports plugins in every process, so importing this package loads neither FastAPI
nor the store: :data:`asgi_app` builds the app on its first request.
"""

from __future__ import annotations

from campaign_orchestrator.lazy_asgi import LazyApp
from campaign_orchestrator.unsubscribe.tokens import URL_PREFIX

asgi_app = LazyApp("campaign_orchestrator.unsubscribe.app:create_app")

__all__ = ["URL_PREFIX", "asgi_app"]
