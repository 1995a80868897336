"""Keep credentials out of everything the orchestrator records.

Secret values are taken from the environment (AWS keys, MLflow passwords and tokens,
anything named like a secret) and replaced by `***` in params, tags and text
artifacts before they reach MLflow. Values shorter than 6 characters are ignored:
masking them would garble ordinary text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

MASK = "***"
_SECRET_NAMES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "DATABRICKS_TOKEN",
    }
)
_SECRET_PATTERN = re.compile(r"(PASSWORD|SECRET|TOKEN|PRIVATE_KEY|CREDENTIAL)", re.IGNORECASE)
_MIN_LENGTH = 6


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of secret-looking environment variables, longest first."""
    env = os.environ if environ is None else environ
    values = {
        value
        for name, value in env.items()
        if (name in _SECRET_NAMES or _SECRET_PATTERN.search(name)) and len(value) >= _MIN_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def scrub(text: str, environ: Mapping[str, str] | None = None) -> str:
    for value in secret_values(environ):
        if value in text:
            text = text.replace(value, MASK)
    return text


def scrub_file(source: Path, target: Path) -> None:
    """A copy of a text file (a log) with secret values masked; bytes that are not UTF-8 are kept as they are."""
    text = source.read_bytes().decode("utf-8", errors="surrogateescape")
    target.write_bytes(scrub(text).encode("utf-8", errors="surrogateescape"))


def scrub_mapping(items: Mapping[str, str]) -> dict[str, str]:
    values = secret_values()
    if not values:
        return dict(items)
    return {key: scrub(str(value)) for key, value in items.items()}
