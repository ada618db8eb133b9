"""RapidOCR vs Tesseract on the same pages, for docs/INGEST.md: character accuracy, pages/s, peak memory.

Pages: Chinese and English policy text drawn with Noto Sans CJK SC (Debian `fonts-noto-cjk`) on A4 at 200 dpi
(`tests/ingest/scans.py`), read twice through the real loaders: as PNG files (`load_image`) and as one
image-only PDF (`load_pdf`: pypdfium2 renders each page at 200 dpi, then OCR). Accuracy is 1 − CER, the
character edit distance over the length of the true text, both sides NFKC-normalised with whitespace removed
(so "：" and ":" count as one character and line breaks do not count). Each engine runs in a fresh process:
pages/s exclude the first page (model loading, reported as `warmup_s`); peak RSS is the process's own
(RapidOCR runs in it) and, for Tesseract, the largest `tesseract` child process.

Run: `PYTHONPATH=. python benchmarks/ocr_engines.py [--repeats 2]` (needs tesseract-ocr, tesseract-ocr-chi-sim,
fonts-noto-cjk). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import unicodedata

from ingest import OcrOptions, load_bytes
from tests.ingest.scans import image_only_pdf, png_bytes, render_page

CHINESE = [
    "差旅费管理办法\n第一条 为规范公司差旅费报销，合理控制费用支出，根据国家有关规定，结合公司实际，制定本办法。\n"
    "第二条 本办法适用于公司全体正式员工、试用期员工及劳务派遣人员因公出差发生的交通费、住宿费和伙食补助费。\n"
    "第三条 住宿标准：一线城市每晚不超过六百元，省会城市每晚不超过四百五十元，其他城市每晚不超过三百五十元。"
    "超出标准的部分由个人承担，确因会议安排需要超标的，须事先经部门负责人书面批准。\n"
    "第四条 交通标准：出差人员乘坐火车的，可乘坐高铁二等座或动车二等座；连续乘车超过八小时的，可乘坐软卧。",
    "第五条 伙食补助按出差自然天数计算，每人每天一百元，包干使用，不再另行报销餐费。\n"
    "第六条 出差人员应当在返回后十五个工作日内办理报销手续，逾期未报销的，财务部门不予受理。\n"
    "第七条 员工年休假按照累计工作年限确定：已满一年不满十年的，年休假五天；已满十年不满二十年的，年休假十天；"
    "已满二十年的，年休假十五天。\n第八条 本办法由人力资源部负责解释，自发布之日起施行。",
]
ENGLISH = [
    "Travel and Expense Policy\nSection 1. This policy applies to all full-time employees, interns and "
    "contractors who travel on company business. Hotel rooms must not exceed 600 yuan per night in first-tier "
    "cities and 450 yuan per night in provincial capitals.\nSection 2. Employees should book economy class for "
    "flights shorter than six hours. Business class may be approved by a vice president for longer flights.\n"
    "Section 3. Expense reports must be submitted within fifteen working days after the trip, together with "
    "original receipts and the approved travel request.",
    "Information Security Policy\nSection 4. Passwords must be at least twelve characters long and must be "
    "changed every ninety days. Never share your password with anyone, including the IT help desk.\n"
    "Section 5. Laptops must use full-disk encryption and lock the screen after five minutes of inactivity. "
    "Report a lost or stolen device to security@example.com within one hour.\nSection 6. Remote access to "
    "internal systems is allowed only through the company VPN with two-factor authentication.",
]


def _norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute: cost 1), two rows of the table at a time."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def accuracy(truth: str, read: str) -> float:
    t, r = _norm(truth), _norm(read)
    return 1.0 - edit_distance(t, r) / len(t)


def run_engine(engine: str, repeats: int) -> dict:
    """All pages through one engine in this process: accuracy per language and container, pages/s, peak RSS."""
    options = OcrOptions(engine=engine, timeout_s=300)  # type: ignore[arg-type]
    pages = {"zh": [render_page(t) for t in CHINESE], "en": [render_page(t) for t in ENGLISH]}
    t0 = time.perf_counter()
    load_bytes("warmup.png", png_bytes(pages["en"][0]), "warmup.png", ocr=options)
    warmup = time.perf_counter() - t0
    out: dict = {"engine": engine, "warmup_s": round(warmup, 2), "accuracy": {}, "confidence": {}}
    n_pages, seconds = 0, 0.0
    for _ in range(repeats):
        for lang, imgs in pages.items():
            truth = CHINESE if lang == "zh" else ENGLISH
            t0 = time.perf_counter()
            read_png = [load_bytes(f"{lang}{i}.png", png_bytes(img), f"{lang}{i}.png", ocr=options)
                        for i, img in enumerate(imgs)]
            read_pdf = load_bytes(f"{lang}.pdf", image_only_pdf(imgs), f"{lang}.pdf", ocr=options)
            seconds += time.perf_counter() - t0
            n_pages += 2 * len(imgs)
            per_png = [accuracy(t, d.text) for t, d in zip(truth, read_png, strict=True)]
            out["accuracy"][f"{lang}_png"] = round(sum(per_png) / len(per_png), 4)
            out["accuracy"][f"{lang}_pdf"] = round(accuracy("\n".join(truth), read_pdf.text), 4)
            confs = [p["confidence"] for d in [*read_png, read_pdf] for p in d.meta["ocr"]["pages"]]
            out["confidence"][lang] = round(sum(confs) / len(confs), 3)
    out["pages"] = n_pages
    out["pages_per_s"] = round(n_pages / seconds, 3)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["peak_child_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--engine", help="run one engine in this process (used by the parent run)")
    args = ap.parse_args()
    if args.engine:
        print(json.dumps(run_engine(args.engine, args.repeats)))
        return
    results = {}
    for engine in ("rapidocr", "tesseract"):
        proc = subprocess.run([sys.executable, __file__, "--engine", engine, "--repeats", str(args.repeats)],
                              capture_output=True, text=True, check=True, env={**os.environ})
        results[engine] = json.loads(proc.stdout.strip().splitlines()[-1])
    results["machine"] = {"cpus": os.cpu_count(), "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
