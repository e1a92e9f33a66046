"""``[core] hostname_callable`` for the scale-out test's Celery workers.

Both workers run on one machine, so the fully qualified domain name that Airflow records as a
task instance's ``hostname`` would be the same for both. Each worker process is started with
``CAMPAIGNS_SCALEOUT_WORKER`` set to its own name, and the task processes it forks report that
name instead: the REST API's ``hostname`` field then says which worker ran each task.
"""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("CAMPAIGNS_SCALEOUT_WORKER") or socket.getfqdn()
