"""Project-wide checks that a reviewer would run first: the layer contract and the linter. Both tools are dev
dependencies (`pip install -e '.[dev]'`), so a missing one fails here rather than skipping the check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_point_down_the_layers():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    assert Path(exe).is_file(), "import-linter is a dev dependency: pip install -e '.[dev]'"
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert "No module named ruff" not in proc.stderr, "ruff is a dev dependency: pip install -e '.[dev]'"
    assert proc.returncode == 0, proc.stdout + proc.stderr


PACKAGES = ("ingest", "retrieval", "rerank", "app")


def test_every_source_folder_is_a_package():
    """A folder of modules without an __init__.py is a namespace package, which import-linter and grimp do not
    look into: its imports would escape the layer contract and the cycle check below."""
    missing = sorted(str(folder.relative_to(ROOT)) for name in PACKAGES for folder in [ROOT / name,
                     *(p for p in (ROOT / name).rglob("*") if p.is_dir() and p.name != "__pycache__")]
                     if any(folder.glob("*.py")) and not (folder / "__init__.py").is_file())
    assert not missing, f"add an __init__.py to: {', '.join(missing)}"


def test_no_import_cycles():
    """No module of the four packages imports itself back through others: a circle makes the import order matter
    and ties its modules into one unit. Imports inside functions count, and so do those under
    `if TYPE_CHECKING:` (grimp's default, kept on purpose): a type-only circle still means each module knows the
    other, and it breaks as soon as the annotations are evaluated (`typing.get_type_hints`, pydantic). Break one by
    moving what both need into a third module, or by handing one a callable (see `rerank.validation.onnx_export`)."""
    import grimp

    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = {}
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.setdefault(frozenset(back), " -> ".join((module, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles.values()))
