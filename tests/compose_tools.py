"""Finding a compose command for the compose tests (tests/test_compose.py, tests/test_compose_e2e.py)."""

from __future__ import annotations

import re
import shutil
import subprocess


def find_compose(env: dict[str, str] | None = None) -> tuple[list[str], int] | None:
    """`docker compose` (v2) or `docker-compose` (v1), whichever answers, with its major version."""
    candidates: list[list[str]] = []
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if v1 := shutil.which("docker-compose"):
        candidates.append([v1])
    for cmd in candidates:
        try:
            proc = subprocess.run([*cmd, "version", "--short"], capture_output=True, text=True, timeout=60, env=env)
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.match(r"v?(\d+)\.", proc.stdout.strip())
        if proc.returncode == 0 and match:
            return cmd, int(match.group(1))
    return None
