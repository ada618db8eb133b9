"""The set-up the README gives is the one CI runs: one script installs the system packages the full suite needs,
.ci/run calls it, the README names it, and the README's torch line is the CPU build on any machine."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install-system-packages"


def test_ci_installs_the_system_packages_with_the_script():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^scripts/install-system-packages$", ci, re.M)
    assert "scripts/install-system-packages --postgres" in ci
    assert "apt-get" not in ci  # the package list lives in the script alone


def test_the_script_lists_what_the_full_suite_needs():
    listed = subprocess.run([str(SCRIPT), "--list"], capture_output=True, text=True, check=True).stdout.split()
    assert {"chromium", "fonts-noto-cjk", "tesseract-ocr-chi-sim", "postgresql"} <= set(listed)


def test_the_readme_names_the_script_and_installs_the_cpu_torch():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert "scripts/install-system-packages" in setup
    torch_lines = [line for line in setup.splitlines() if line.startswith("pip install torch")]
    assert torch_lines and all("--index-url https://download.pytorch.org/whl/cpu" in line for line in torch_lines)
