"""Provider-independent open and click tracking of email.

- :mod:`.tokens`: compact signed tokens naming a message (and a link);
- :mod:`.settings`: the ``campaign_tracking`` connection (or ``campaign_unsubscribe``'s);
- :mod:`.rewrite`: the open pixel and click links, added when a message is rendered;
- :mod:`.machine`: which hits no person made (privacy proxies, scanners, automation);
- :mod:`.record`: a hit as a delivery event, through the feedback ingestion;
- :mod:`.app`: the FastAPI endpoint, mounted by the api-server through
  ``plugins/tracking_plugin.py`` at :data:`URL_PREFIX`, or served alone
  (``python -m campaign_orchestrator.tracking.app``);
- :mod:`.extract`: the tracking URLs of a sent message, for tests.

Airflow imports plugins in every process, so importing this package loads neither FastAPI
nor the store: :data:`asgi_app` builds the app on its first request.
"""

from __future__ import annotations

from campaign_orchestrator.lazy_asgi import LazyApp
from campaign_orchestrator.tracking.settings import URL_PREFIX

asgi_app = LazyApp("campaign_orchestrator.tracking.app:create_app")

__all__ = ["URL_PREFIX", "asgi_app"]
