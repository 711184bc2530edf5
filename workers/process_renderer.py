"""The worker process's one Renderer, shared by every task module.

Kept apart from ``workers.tasks`` so task modules (``workers.precache``, ``workers.region`` …)
reach the renderer without importing the module that imports them.
"""

from __future__ import annotations

import threading
from typing import Any

from celery.signals import worker_process_init

from tilecast.common.settings import get_settings
from tilecast.workers.engine import Renderer

_renderer: Renderer | None = None
_renderer_lock = threading.Lock()


def get_renderer() -> Renderer:
    """This process's Renderer, created on first use (after the pool has forked)."""
    global _renderer
    if _renderer is None:
        with _renderer_lock:
            if _renderer is None:
                _renderer = Renderer(get_settings())
    return _renderer


def use_renderer(renderer: Renderer | None) -> None:
    """Install (or with None, forget) the process's Renderer; tests use this."""
    global _renderer
    with _renderer_lock:
        _renderer = renderer


@worker_process_init.connect
def _forget_inherited_renderer(**_kwargs: Any) -> None:
    # Redis connections and open files must not be shared with the parent process.
    use_renderer(None)
