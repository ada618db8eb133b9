"""Rules of the test suite itself: no test module imports another (helpers live in conftest.py files or helper
modules such as tests/processes.py and tests/app/ui/helpers.py), and every test has exactly one tier."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_module_imports_another():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(TESTS.parent)}:{node.lineno} imports {name}" for name in names
                          if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")]
    assert not offenders, "move the helpers into a conftest.py or a helper module:\n" + "\n".join(offenders)


def test_every_test_has_exactly_one_tier(request):
    from tests.conftest import TIERS

    tiers = [m.name for m in request.node.iter_markers() if m.name in TIERS]
    assert tiers == ["unit"], tiers  # this test itself: in-process, so unit by the rule
    for item in request.session.items:
        assert len({m.name for m in item.iter_markers() if m.name in TIERS}) == 1, item.nodeid


def test_the_tier_markers_are_declared(pytestconfig):
    from tests.conftest import TIERS

    declared = {line.split(":")[0].strip() for line in pytestconfig.getini("markers")}
    assert set(TIERS) | {"slow"} <= declared
    assert "--strict-markers" in pytestconfig.getini("addopts")

