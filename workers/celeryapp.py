"""The worker side's Celery app: ``common.taskprotocol``'s configuration plus our tasks.

``tilecast worker`` runs ``app.worker_main([...])``; the api never imports this module
(it sends tasks by name).
"""

from __future__ import annotations

from tilecast.common.settings import get_settings
from tilecast.common.taskprotocol import make_celery

app = make_celery(get_settings(), main="tilecast-worker")
# The tasks register themselves on ``app`` when workers.tasks is imported; a worker
# imports it at start through ``include``.
app.conf.include = ["tilecast.workers.tasks"]
