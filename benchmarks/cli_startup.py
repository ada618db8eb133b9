"""How long `kb` takes to answer when it has no work to do: `kb --help` and two refused arguments (`kb search ""`,
`kb ingest /nonexistent`), each a fresh process, beside `python -c pass` (the interpreter's own start), so that
the figures read as ratios on a shared, noisy machine.

    HF_HUB_OFFLINE=1 python benchmarks/cli_startup.py [--repeats 5] [--compare DIR] [--json]

`--compare DIR` times another copy of the source tree (e.g. `git archive HEAD | tar -x -C /tmp/kb-before`) in the
same rounds as this one. Every round runs each command of each tree once, in rotating order; a command's figure
is its median wall time over the rounds, and its ratio that median over the median of `python -c pass`. Each run
has a fresh temporary index folder and no config file, so nothing a run leaves behind changes the next one. Not a
test: it asserts nothing about time (tests/app/test_cli_startup.py guards the imports instead).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"kb --help": ["--help"], 'kb search ""': ["search", ""], "kb ingest /nonexistent": ["ingest",
                                                                                              "/nonexistent"]}


def _run(argv: list[str], source: Path | None, scratch: Path) -> tuple[float, int]:
    """(wall seconds, exit code) of one fresh process; `source` None: `python -c pass`."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", KB_CONFIG=str(scratch / "kb.toml"), KB_INDEX_DIR=str(scratch / "index"))
    if source is None:
        args = [sys.executable, "-c", "pass"]
    else:  # the tree's own `app` first on the path, ahead of the installed (editable) one
        env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        args = [sys.executable, "-c", "from app.cli import main; main()", *argv]
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another source tree to time in the same rounds (e.g. before)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    trees = {"this": ROOT} | ({"compare": args.compare.resolve()} if args.compare else {})
    cases = [("python -c pass", None, [])] + [(f"{tree}: {name}", src, argv) for tree, src in trees.items()
                                               for name, argv in COMMANDS.items()]
    times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    codes: dict[str, set[int]] = {label: set() for label, _, _ in cases}
    load_before = os.getloadavg()[0]
    for r in range(args.repeats):
        for i in range(len(cases)):  # rotating order: no case always runs first (colder) or last
            label, src, argv = cases[(i + r) % len(cases)]
            with tempfile.TemporaryDirectory() as scratch:
                seconds, code = _run(argv, src, Path(scratch))
            times[label].append(seconds)
            codes[label].add(code)
    base = statistics.median(times["python -c pass"])
    report = {"repeats": args.repeats, "python": sys.version.split()[0], "cpus": os.cpu_count(),
              "load_average": load_before, "load_average_after": os.getloadavg()[0],
              "trees": {k: str(v) for k, v in trees.items()},
              "results": {label: {"median_s": round(statistics.median(t), 3), "min_s": round(min(t), 3),
                                  "ratio_vs_python": round(statistics.median(t) / base, 1),
                                  "exit_codes": sorted(codes[label])} for label, t in times.items()}}
    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.repeats} rounds, {report['cpus']} CPUs, load average {load_before:.2f} → "
          f"{report['load_average_after']:.2f}")
    for label, r in report["results"].items():
        print(f"{label:40} median {r['median_s']:7.3f} s  min {r['min_s']:7.3f} s  "
              f"{r['ratio_vs_python']:6.1f}× python -c pass  exit {','.join(map(str, r['exit_codes']))}")


if __name__ == "__main__":
    main()
