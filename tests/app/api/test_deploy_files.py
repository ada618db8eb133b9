"""The Docker files refer to things that exist: kb commands and options, settings, the health endpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def services() -> list[tuple[str, dict]]:
    return [(f"{f}:{n}", s) for f in ("docker-compose.yml", "docker-compose.gpu.yml")
            for n, s in compose(f)["services"].items()]


@pytest.mark.parametrize("name, service", [x for x in services() if x[1].get("command", [""])[0] == "kb"])
def test_service_commands_are_real_kb_commands(name, service):
    cmd = service["command"]
    result = CliRunner().invoke(app, [*cmd[1:2], "--help"])
    assert result.exit_code == 0, f"{name}: `kb {cmd[1]}` is not a command"
    for opt in (a for a in cmd[2:] if a.startswith("--")):
        assert opt in result.output, f"{name}: `kb {cmd[1]}` has no option {opt}"


def test_kb_environment_names_are_settings():
    from app.settings import AuthSettings

    fields = {f.upper() for f in Settings.model_fields} | {f"AUTH_{f.upper()}" for f in AuthSettings.model_fields}
    for name, service in services():
        env = service.get("environment", [])
        names = env if isinstance(env, list) else list(env)
        for var in (re.split("[=:]", v)[0].strip() for v in names):
            if var.startswith("KB_"):
                assert var[3:] in fields, f"{name}: {var} is not a setting"
    dockerfile = (ROOT / "Dockerfile").read_text()
    for var in re.findall(r"\bKB_([A-Z_]+)=", dockerfile):
        assert var in fields, f"Dockerfile: KB_{var} is not a setting"


def test_dockerfile_installs_torch_before_the_project():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    torch = next(i for i, line in enumerate(lines) if "pip install" in line and "torch==" in line)
    project = next(i for i, line in enumerate(lines) if re.search(r"pip install \.", line))
    assert torch < project
