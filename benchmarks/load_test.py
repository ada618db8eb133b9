"""Load test of `kb serve` on loopback: concurrent clients sending mixed /search and /rerank, then an overload burst.

Phase 1 (steady): `--clients` async clients (httpx), each sending one request after another for `--seconds` (or
until `--max-requests`), a `--rerank-share` of them POST /rerank (a query and 20 passages), the rest POST /search.
Reported: requests/s, latency P50/P95/P99 per route, status counts, errors (anything but 200, and 429 counts apart),
and the server's resident memory (RSS) before, in the middle and at the end.
Phase 2 (overload): `--overload-clients` clients at once for `--overload-seconds`, more than the server admits
(`api_max_concurrency` running + `api_max_queue` waiting): the surplus must get 429 at once, not queue without
bound; reported: how many 429s, and their latency next to the 200s'.

With `--compare-batching` it measures cross-request batching instead (docs/PERFORMANCE.md, "Cross-request
batching"): two servers over the same index and model, one with `KB_RERANK_BATCHING=true`, one with false, and for
each of `--levels` concurrent clients (default 1, 4, 16) phases of `--seconds` alternating between them (`--repeats`
times, the order swapped each time), the same seeded requests for both. Reported per level and configuration:
requests/s, latency P50/P95, the batcher's requests per round, and the ratios on/off.

    python benchmarks/load_test.py --compare-batching --reranker-shape minilm --seconds 20 --repeats 2 --json

Without `--url` the script builds what it serves: the sample knowledge base (data/samples/docs) ingested with the
packaged all-MiniLM-L6-v2 into a temporary index, a tiny cross-encoder (tests/tiny_models.py, random weights, real
BERT architecture: the cost of a real small reranker, not its quality) and `kb serve` on a free loopback port, each
in a subprocess, so this process only sends requests. Run from the repository root:

    python benchmarks/load_test.py --clients 20 --seconds 60 --json

Exit code 1 when any request failed (a 5xx, a transport error or an unexpected 4xx); 429s in the overload phase
are the point of that phase and are not errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.quality.latency import percentiles

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"


# ---- what the server holds and what clients ask ---------------------------------------------------------------
def sample_queries() -> list[str]:
    with open(SAMPLES / "queries.jsonl", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def sample_passages() -> list[str]:
    """Paragraphs of the sample documents' Markdown and text files (for /rerank candidates)."""
    out = []
    for path in sorted((SAMPLES / "docs").rglob("*")):
        if path.suffix in (".md", ".txt"):
            for para in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
                para = para.strip()
                if 40 <= len(para) <= 800 and not para.startswith(("---", "#")):
                    out.append(para)
    return out


@dataclass
class Workload:
    queries: list[str]
    passages: list[str]
    rerank_share: float
    candidates: int = 20

    def request(self, rng: random.Random) -> tuple[str, dict]:
        query = rng.choice(self.queries)
        if rng.random() < self.rerank_share:
            return "/rerank", {"query": query, "documents": rng.sample(self.passages, self.candidates)}
        return "/search", {"query": query, "top_k": rng.choice([20, 50]), "threshold": 0.0}


# ---- measuring --------------------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (psutil when installed, else /proc)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    raise RuntimeError(f"cannot read the memory of process {pid}")


@dataclass
class Record:
    route: str
    status: int  # 0: transport error
    ms: float
    detail: str = ""  # the error's body (or exception) when not 200


@dataclass
class PhaseResult:
    seconds: float
    records: list[Record] = field(default_factory=list)
    rss_mb: dict[str, float] = field(default_factory=dict)
    rss_timeline: list[tuple[int, float]] = field(default_factory=list)  # (seconds into the phase, MB)

    def summary(self, errors_exclude_429: bool) -> dict:
        by_route: dict[str, list[float]] = {}
        for r in self.records:
            if r.status == 200:
                by_route.setdefault(r.route, []).append(r.ms)
        statuses = Counter(str(r.status) for r in self.records)
        errors = [r for r in self.records if r.status != 200 and not (errors_exclude_429 and r.status == 429)]
        rejected = [r.ms for r in self.records if r.status == 429]
        ok = [r.ms for r in self.records if r.status == 200]
        return {
            "seconds": round(self.seconds, 1), "requests": len(self.records),
            "requests_per_s": round(len(self.records) / self.seconds, 2) if self.seconds else 0.0,
            "ok_per_s": round(len(ok) / self.seconds, 2) if self.seconds else 0.0,
            "statuses": dict(sorted(statuses.items())), "errors": len(errors),
            "latency_ms": {"all_ok": percentiles(ok), **{k: percentiles(v) for k, v in sorted(by_route.items())}},
            "rejected_429_latency_ms": percentiles(rejected), "rss_mb": self.rss_mb,
            "rss_timeline_mb": self.rss_timeline,
            "error_examples": sorted({f"{r.status} {r.route}: {r.detail}" for r in errors})[:5],
        }


async def run_phase(url: str, workload: Workload, clients: int, seconds: float, max_requests: int,
                    server_pid: int | None, seed: int = 0, headers: dict | None = None) -> PhaseResult:
    """`clients` loops each sending one request after another until `seconds` pass or `max_requests` are sent."""
    deadline = time.monotonic() + seconds
    result = PhaseResult(seconds=0.0)
    sent = 0

    async def client(n: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        rng = random.Random(f"{seed}-{n}")
        while time.monotonic() < deadline and sent < max_requests:
            sent += 1
            route, body = workload.request(rng)
            t0 = time.perf_counter()
            detail = ""
            try:
                r = await http.post(url + route, json=body)
                status = r.status_code
                if status != 200:
                    detail = r.text[:300]
            except httpx.HTTPError as exc:
                status, detail = 0, f"{type(exc).__name__}: {exc}"[:300]
            result.records.append(Record(route, status, (time.perf_counter() - t0) * 1000, detail))

    async def sample_memory() -> None:
        if server_pid is None:
            return
        result.rss_mb["start"] = round(rss_mb(server_pid), 1)
        began = time.monotonic()
        half = began + seconds / 2
        peak = result.rss_mb["start"]
        step = max(1.0, seconds / 12)
        next_tick = began + step
        while time.monotonic() < deadline and sent < max_requests:
            await asyncio.sleep(0.5)
            now = rss_mb(server_pid)
            peak = max(peak, now)
            if "middle" not in result.rss_mb and time.monotonic() >= half:
                result.rss_mb["middle"] = round(now, 1)
            if time.monotonic() >= next_tick:
                result.rss_timeline.append((round(time.monotonic() - began), round(now, 1)))
                next_tick += step
        result.rss_mb["peak"] = round(peak, 1)

    # Idle connections expire on this side before uvicorn's 5 s keep-alive timeout closes them on the other: a
    # starved client reusing one the server just closed would count a reset that is nobody's error.
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=120, limits=limits, headers=headers) as http:
        await asyncio.gather(sample_memory(), *(client(n, http) for n in range(clients)))
    result.seconds = time.monotonic() - started
    if server_pid is not None:
        result.rss_mb["end"] = round(rss_mb(server_pid), 1)
    return result


# ---- the server -------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kb(*args: str) -> list[str]:
    return [sys.executable, "-c", "from app.cli import main; main()", *args]


# The rerankers this script can build: the tests' tiny BERT (hidden 32, 2 layers: per-pass overhead dominates), or
# one of ms-marco-MiniLM-L-6-v2's shape (hidden 384, 6 layers, 12 heads: a real small reranker's cost per pair).
RERANKER_SHAPES = {"tiny": {}, "minilm": {"hidden_size": 384, "num_layers": 6, "num_heads": 12}}


def prepare(workdir: Path, env: dict, shape: str = "tiny") -> tuple[Path, Path]:
    """Index the sample KB with MiniLM and build the reranker of `shape` (RERANKER_SHAPES), each in a subprocess
    (kept when already in `workdir`)."""
    index, reranker = workdir / "index", workdir / ("tiny_reranker" if shape == "tiny" else f"{shape}_reranker")
    if (index / "CURRENT").is_file() and (reranker / "config.json").is_file():
        return index, reranker
    if not (index / "CURRENT").is_file():
        subprocess.run(kb("ingest", str(SAMPLES / "docs"), "--index", str(index), "--embedder",
                          "packaged:all-MiniLM-L6-v2", "--json"), cwd=REPO,
                       env=env, check=True, stdout=subprocess.DEVNULL)
    code = ("from tests.tiny_models import build_tiny_cross_encoder; "
            f"build_tiny_cross_encoder({str(reranker)!r}, arch='bert', seed=3, **{RERANKER_SHAPES[shape]!r})")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return index, reranker


def start_server(index: Path, reranker: Path, env: dict, log: Path,
                 timeout: float = 600) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(kb("serve", "--host", "127.0.0.1", "--port", str(port), "--index", str(index),
                               "--embedder", "packaged:all-MiniLM-L6-v2", "--reranker", str(reranker)),
                            cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kb serve exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"kb serve did not become ready in {timeout} s; see {log}")


# ---- cross-request batching, on against off ------------------------------------------------------------------
def _batching_counts(url: str, headers: dict | None) -> dict:
    """The serving reranker's batching counters (`info().details["batching"]`), {} without a batcher."""
    info = httpx.get(url + "/info", headers=headers, timeout=30).json()
    return ((info.get("reranker") or {}).get("details") or {}).get("batching") or {}


def compare_batching(urls: dict[str, str], workload: Workload, levels: list[int],
                     seconds: float, repeats: int, warmup_s: float, seed: int, headers: dict | None) -> dict:
    """Phases at each level of concurrency, alternating between the servers of `urls` ({"off": url, "on": url}),
    the order swapped at each repeat; the same seeded requests for both. One summary per level and configuration,
    and the ratios on/off."""
    for url in urls.values():  # lazy buffers, first-call costs
        asyncio.run(run_phase(url, workload, max(levels), warmup_s, 10**9, None, seed, headers))
    out: dict = {}
    for clients in levels:
        records: dict[str, list[Record]] = {name: [] for name in urls}
        spent = dict.fromkeys(urls, 0.0)
        batching: dict[str, dict] = {}
        for rep in range(repeats):
            order = list(urls) if rep % 2 == 0 else list(reversed(urls))
            for name in order:
                before = _batching_counts(urls[name], headers)
                phase = asyncio.run(run_phase(urls[name], workload, clients, seconds, 10**9, None,
                                              seed + 100 * clients + rep, headers))
                after = _batching_counts(urls[name], headers)
                records[name] += phase.records
                spent[name] += phase.seconds
                if after:
                    b = batching.setdefault(name, {"rounds": 0, "requests": 0, "pairs": 0})
                    for key in b:
                        b[key] += after[key] - before.get(key, 0)
        level: dict = {}
        for name, recs in records.items():
            ok = [r.ms for r in recs if r.status == 200]
            b = batching.get(name)
            level[name] = {
                "requests": len(recs), "errors": len(recs) - len(ok), "seconds": round(spent[name], 1),
                "requests_per_s": round(len(ok) / spent[name], 2) if spent[name] else 0.0,
                "latency_ms": percentiles(ok),
                "requests_per_round": round(b["requests"] / b["rounds"], 2) if b and b["rounds"] else None,
                "pairs_per_round": round(b["pairs"] / b["rounds"], 1) if b and b["rounds"] else None,
            }
        on, off = level.get("on"), level.get("off")
        if on and off and off["requests_per_s"] and off["latency_ms"]:
            level["ratio_on_off"] = {
                "throughput": round(on["requests_per_s"] / off["requests_per_s"], 2),
                "p50": round(on["latency_ms"]["p50"] / off["latency_ms"]["p50"], 2),
                "p95": round(on["latency_ms"]["p95"] / off["latency_ms"]["p95"], 2)}
        out[str(clients)] = level
    return out


def main_compare_batching(args, env: dict, workload: Workload, headers: dict | None) -> int:
    """Two servers, batching on and off, measured side by side (`compare_batching`); prints the report."""
    with tempfile.TemporaryDirectory() as tmp:
        env.setdefault("KB_CONFIG", str(Path(tmp) / "no-kb.toml"))
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        index, reranker = prepare(work, env, args.reranker_shape)
        procs: dict[str, subprocess.Popen] = {}
        urls: dict[str, str] = {}
        try:
            for name, flag in (("off", "false"), ("on", "true")):
                server_env = {**env, "KB_RERANK_BATCHING": flag, "KB_RERANK_BATCH_WAIT_MS": str(args.batch_wait_ms),
                              "KB_RERANK_BATCH_TOKENS": str(args.batch_tokens)}
                procs[name], urls[name] = start_server(index, reranker, server_env, Path(tmp) / f"serve-{name}.log")
            setup_s = round(time.perf_counter() - t0, 1)
            info = httpx.get(urls["on"] + "/info", headers=headers, timeout=30).json()
            limits = {name: httpx.get(url + "/info", headers=headers, timeout=30).json()["limits"]
                      for name, url in urls.items()}
            load_before = [round(x, 2) for x in os.getloadavg()]
            levels = compare_batching(urls, workload,
                                      [int(x) for x in args.levels.split(",")], args.seconds, args.repeats,
                                      args.warmup_seconds, args.seed, headers)
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=30)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()) + " UTC", "setup_s": setup_s,
        "cpu_count": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "server": {"embedder": info["embedder"]["name"], "reranker": (info["reranker"] or {}).get("name"),
                   "reranker_shape": args.reranker_shape, "device": info["device"], "dtype": info["dtype"],
                   "batch_size": (info["reranker"] or {}).get("batch_size"),
                   "threads": (info["reranker"] or {}).get("threads"), "chunks": info["index"]["chunks"],
                   "admitted_at_once": {n: lim.get("admitted_at_once") for n, lim in limits.items()},
                   "batch_wait_ms": args.batch_wait_ms, "batch_tokens": args.batch_tokens},
        "workload": {"rerank_share": workload.rerank_share, "rerank_candidates": workload.candidates,
                     "seconds_per_phase": args.seconds, "repeats": args.repeats},
        "levels": levels,
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"{'clients':>7} {'config':>6} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'req/round':>9}")
        for clients, level in levels.items():
            for name in ("off", "on"):
                r = level[name]
                print(f"{clients:>7} {name:>6} {r['requests_per_s']:>8} {r['latency_ms'].get('p50', '-'):>8} "
                      f"{r['latency_ms'].get('p95', '-'):>8} {r['requests_per_round'] or '-':>9}")
            if "ratio_on_off" in level:
                print(f"{clients:>7} on/off {level['ratio_on_off']}")
    return 1 if any(level[n]["errors"] for level in levels.values() for n in ("off", "on")) else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="an already running server (else one is built and started here)")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    ap.add_argument("--api-key", help="sent as X-API-Key")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--max-requests", type=int, default=100_000)
    ap.add_argument("--rerank-share", type=float, default=0.5)
    ap.add_argument("--warmup-seconds", type=float, default=10.0, help="at full concurrency, before measuring")
    ap.add_argument("--workdir", help="keep the built index and reranker here (reused by the next run)")
    ap.add_argument("--overload-clients", type=int, default=150)
    ap.add_argument("--overload-seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--compare-batching", action="store_true",
                    help="measure cross-request batching: servers with it on and off, side by side (no --url)")
    ap.add_argument("--levels", default="1,4,16", help="with --compare-batching: concurrent clients, comma-separated")
    ap.add_argument("--repeats", type=int, default=2, help="with --compare-batching: phases per level and server")
    ap.add_argument("--reranker-shape", choices=sorted(RERANKER_SHAPES), default="tiny")
    ap.add_argument("--batch-wait-ms", type=float, default=5.0, help="KB_RERANK_BATCH_WAIT_MS of the batching server")
    ap.add_argument("--batch-tokens", type=int, default=16384, help="KB_RERANK_BATCH_TOKENS of the batching server")
    args = ap.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    headers = {"X-API-Key": args.api_key} if args.api_key else None
    workload = Workload(sample_queries(), sample_passages(), args.rerank_share)
    if args.compare_batching:
        if args.url:
            ap.error("--compare-batching starts its own two servers; leave out --url")
        return main_compare_batching(args, env, workload, headers)
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.url is None:
            env.setdefault("KB_CONFIG", str(Path(tmp) / "no-kb.toml"))
            t0 = time.perf_counter()
            work = Path(args.workdir) if args.workdir else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            index, reranker = prepare(work, env, args.reranker_shape)
            proc, url = start_server(index, reranker, env, Path(tmp) / "serve.log")
            pid: int | None = proc.pid
            setup_s = round(time.perf_counter() - t0, 1)
        else:
            url, pid, setup_s = args.url.rstrip("/"), args.pid, 0.0
        try:
            info = httpx.get(url + "/info", headers=headers, timeout=30).json()
            asyncio.run(run_phase(url, workload, args.clients, args.warmup_seconds, 10**9, None, args.seed, headers))
            steady = asyncio.run(run_phase(url, workload, args.clients, args.seconds, args.max_requests, pid,
                                           args.seed + 1, headers))
            heavy = Workload(workload.queries, workload.passages, 1.0, candidates=min(100, len(workload.passages)))
            burst = asyncio.run(run_phase(url, heavy, args.overload_clients, args.overload_seconds, 10**9, pid,
                                          args.seed + 2, headers))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "url": url, "setup_s": setup_s, "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "server": {"embedder": info["embedder"]["name"], "reranker": (info["reranker"] or {}).get("name"),
                   "device": info["device"], "dtype": info["dtype"], "chunks": info["index"]["chunks"],
                   "limits": {k: info["limits"][k] for k in ("max_concurrency", "max_queue")}},
        "workload": {"clients": args.clients, "rerank_share": args.rerank_share, "rerank_candidates": 20,
                     "overload_clients": args.overload_clients, "overload_candidates": heavy.candidates},
        "steady": steady.summary(errors_exclude_429=False),
        "overload": burst.summary(errors_exclude_429=True),
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        s, o = report["steady"], report["overload"]
        print(f"steady: {s['requests']} requests in {s['seconds']} s = {s['requests_per_s']}/s, errors "
              f"{s['errors']}, statuses {s['statuses']}, latency {s['latency_ms']}, RSS MB {s['rss_mb']}")
        print(f"overload: {o['requests']} requests, statuses {o['statuses']}, errors {o['errors']}, 429 latency "
              f"{o['rejected_429_latency_ms']}, 200 latency {o['latency_ms']['all_ok']}, RSS MB {o['rss_mb']}")
    return 1 if report["steady"]["errors"] or report["overload"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
