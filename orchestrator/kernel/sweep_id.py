"""Sweep ids: `<sweep name>-<YYYYmmdd-HHMMSS>-<4 hex>`, unique per submission; the sweep's folder and tag."""

from __future__ import annotations

import secrets
import time


def new_sweep_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
