"""A corpus of hostile and awkward files, generated in a few seconds (never committed): each bad file with the words
its skip reason must contain, each good file with a sentence that must come out of the index intact."""

from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path

from .conftest import policy_text

# file name → words the skip reason must contain
BAD = {
    "bomb.docx": "zip bomb",  # 32 MB of paragraphs in ~100 KB: over 100 times smaller than it unpacks
    "pages_6000.pdf": "6000 pages",
    "nested_10000.html": "nested",
    "nul_bytes.txt": "binary",
    "one_line_10mb.txt": "single line",
    "encrypted.pdf": "encrypted",
    "truncated.pdf": "PDF",
    "empty.md": "empty",
    "too_big.txt": "limit",
    "random.docx": "not a valid DOCX",
}

# file name → a passage that must be found verbatim in the index after ingest
GOOD = {
    "emoji.md": "Remote work 🏠 is allowed two days a week 📅 and passwords 🔑 rotate every 90 days.",
    "arabic.md": "يحق لكل موظف ثلاثين يوما من الإجازة السنوية مدفوعة الأجر.",
    "hebrew.txt": "לכל עובד מגיעים עשרים ימי חופשה בשנה.",
    "mixed_direction.txt": "The VPN token \u202ereset\u202c is done in the portal (English with a bidi override).",
    "nul_after_8k.md": "Badges are returned to reception on the last working day.",
    "pages_2000.pdf": "Page 1999 of the travel manual",
    "plain.md": "Overtime is paid at one and a half times the hourly rate.",
}


def _docx_bomb(path: Path, unpacked_mb: int = 32) -> None:
    import docx

    buf = io.BytesIO()
    seed = docx.Document()
    seed.add_paragraph("seed")
    seed.save(buf)
    src = zipfile.ZipFile(buf)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if info.filename != "word/document.xml":
                out.writestr(info, src.read(info))
                continue
            head, tail = src.read(info).decode().split("<w:body>")
            block = ("<w:p><w:r><w:t>zip bomb</w:t></w:r></w:p>" * 10_000).encode()
            with out.open("word/document.xml", "w") as fh:
                fh.write((head + "<w:body>").encode())
                for _ in range(unpacked_mb * 2**20 // len(block)):
                    fh.write(block)
                fh.write(tail.encode())


def _pdf(path: Path, pages: int, line) -> None:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    for i in range(pages):
        c.drawString(72, 720, line(i))
        c.showPage()
    c.save()


def write_hostile_corpus(folder: Path, seed: int = 0) -> Path:
    """Write every BAD and GOOD file into `folder` (about 50 MB on disk, mostly the 10 MB line and 21 MB file)."""
    from pypdf import PdfReader, PdfWriter

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    _docx_bomb(folder / "bomb.docx")

    writer = PdfWriter()
    for _ in range(6000):
        writer.add_blank_page(612, 792)
    writer.write(folder / "pages_6000.pdf")
    words = ["claims", "receipts", "hotels", "flights", "per diem", "taxis", "mileage", "approval"]
    _pdf(folder / "pages_2000.pdf", 2000, lambda i: f"Page {i} of the travel manual covers {rng.choice(words)} "
                                                     f"and {rng.choice(words)}.")
    (folder / "nested_10000.html").write_text("<html><body>" + "<div>" * 10_000 + "Deep leave policy."
                                              + "</div>" * 10_000 + "</body></html>", encoding="utf-8")
    (folder / "nul_bytes.txt").write_bytes(b"Leave policy\x00\x00 with NUL bytes\x00 in it.\n" * 20)
    (folder / "one_line_10mb.txt").write_text("".join(f"{rng.getrandbits(128):032x}" for _ in range(10 * 2**15)),
                                              encoding="ascii")
    secret = PdfWriter()
    secret.append(PdfReader(folder / "pages_2000.pdf"), pages=(0, 2))
    secret.encrypt(user_password="s3cret", owner_password="owner")
    secret.write(folder / "encrypted.pdf")
    whole = (folder / "pages_2000.pdf").read_bytes()
    (folder / "truncated.pdf").write_bytes(whole[: len(whole) // 3])
    (folder / "empty.md").write_bytes(b"")
    with open(folder / "too_big.txt", "wb") as fh:  # just over the default 20 MB limit
        line = b"The canteen opens at noon and closes at two.\n"
        fh.write(line * (21 * 2**20 // len(line)))
    (folder / "random.docx").write_bytes(os.urandom(4096))

    (folder / "emoji.md").write_text(f"# Emoji policy 🎉\n\n{GOOD['emoji.md']}\n", encoding="utf-8")
    (folder / "arabic.md").write_text(f"# سياسة الإجازات\n\n{GOOD['arabic.md']}\n\nAnnual leave in Arabic.\n",
                                      encoding="utf-8")
    (folder / "hebrew.txt").write_text(f"מדיניות חופשה\n\n{GOOD['hebrew.txt']}\n", encoding="utf-8")
    (folder / "mixed_direction.txt").write_text(f"Bidi\n\n{GOOD['mixed_direction.txt']}\n", encoding="utf-8")
    body = policy_text(rng, "Badges", 4, 60)
    (folder / "nul_after_8k.md").write_bytes((body * 8).encode() + b"\x00\x00"
                                             + f"\n\n{GOOD['nul_after_8k.md']}\n".encode())
    (folder / "plain.md").write_text(f"# Overtime\n\n{GOOD['plain.md']}\n", encoding="utf-8")
    return folder
