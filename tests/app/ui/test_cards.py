"""Cards, highlighting and the raw table as pure functions: what a person reads on each result."""

from __future__ import annotations

import csv
import io
import math

import pytest
from bs4 import BeautifulSoup

from app.ui.components.cards import card_html, ordinal, verdict
from app.ui.components.highlight import highlight
from app.ui.components.rows import COLUMNS, Row, from_scored, to_csv
from rerank.types import Scored, band_of, sigmoid


@pytest.mark.parametrize("n,expected", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (10, "10th"), (11, "11th"),
                                        (12, "12th"), (13, "13th"), (21, "21st"), (22, "22nd"), (23, "23rd"),
                                        (101, "101st"), (111, "111th"), (112, "112th")])
def test_ordinals(n, expected):
    assert ordinal(n) == expected


def _row(score, raw=None, rank=1, text="Employees get twenty days of annual leave.", **kw):
    raw = math.log(score / (1 - score)) if raw is None and score is not None and 0 < score < 1 else raw
    return Row(id=rank, rank=rank, text=text, score=score, raw_score=raw,
               band=band_of(score) if score is not None else None, shown=True, **kw)


@pytest.mark.parametrize("score,cls", [(0.5001, "kb-pass"), (0.5, "kb-fail"), (0.4999, "kb-fail"), (0.93, "kb-pass"),
                                       (0.0, "kb-fail"), (None, "kb-none")])
def test_colour_rule_green_above_half_red_at_or_below(score, cls):
    assert verdict(score) == cls
    soup = BeautifulSoup(card_html(_row(score, raw=0.0 if score in (0.0,) else None), "leave"), "html.parser")
    assert cls in soup.select_one(".kb-score")["class"]


def test_card_shows_score_band_raw_and_a_bar_exactly_as_wide_as_the_score():
    raw = 0.8123456
    score = sigmoid(raw)
    soup = BeautifulSoup(card_html(_row(score, raw=raw, rank=2, title="Leave policy", section="Annual leave", page=3,
                                        source="/kb/leave-policy.pdf"), "annual leave"), "html.parser")
    assert soup.select_one(".kb-rank").text == "2nd"
    assert soup.select_one(".kb-score").text == f"{score:.4f}"
    assert soup.select_one(".kb-band").text == band_of(score)
    assert soup.select_one(".kb-raw").text == f"raw {raw:.4f}"
    width = soup.select_one(".kb-fill")["style"]
    assert float(width.split(":")[1].strip().rstrip("%")) == pytest.approx(score * 100, abs=1e-4)
    src = soup.select_one(".kb-source").text
    assert "Leave policy › Annual leave" in src and "p. 3" in src and "leave-policy.pdf" in src
    assert [m.text for m in soup.select(".kb-text mark")] == ["annual", "leave"]


def test_recall_only_card_has_no_score_and_no_bar():
    soup = BeautifulSoup(card_html(_row(None, retrieval_score=0.0325, leg="both"), "leave"), "html.parser")
    assert soup.select_one(".kb-fill") is None
    assert "no reranker score" in soup.text and "retrieval 0.0325" in soup.text


def test_document_markup_is_shown_as_text_never_run():
    text = "Never paste <script>alert('x')</script> or <img src=x onerror=alert(1)> & co into the wiki."
    out = highlight(text, "script img paste amp")
    soup = BeautifulSoup(f"<div>{out}</div>", "html.parser")
    assert soup.find("script") is None and soup.find("img") is None
    assert soup.get_text() == text  # every character survives, as text
    assert {m.text for m in soup.find_all("mark")} == {"script", "img", "paste"}
    assert "&amp; co" in out  # a query term "amp" does not reach inside the escaped ampersand


def test_english_terms_match_by_stem_and_chinese_by_jieba_words():
    soup = BeautifulSoup(highlight("Tokens are reset here; resetting a token takes a minute.", "reset my token"),
                         "html.parser")
    assert [m.text for m in soup.find_all("mark")] == ["Tokens", "reset", "resetting", "token"]
    zh = BeautifulSoup(highlight("试用期员工主动离职的，应当提前三日通知公司，并办理离职手续。", "试用期离职手续怎么办理"),
                       "html.parser")
    marked = [m.text for m in zh.find_all("mark")]
    assert "试用期" in marked and "手续" in marked[-1] and "的" not in marked


def test_playground_rows_keep_input_order_as_id_and_apply_threshold_and_top_n():
    scores = [0.2, 0.9, 0.6, 0.55, 0.8]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    scored = [Scored(index=i, text=f"candidate {i}", raw_score=math.log(scores[i] / (1 - scores[i])),
                     score=scores[i], band=band_of(scores[i]), rank=order.index(i) + 1) for i in range(len(scores))]
    rows = from_scored(scored, threshold=0.5, top_n=3)
    assert [r.id for r in rows] == [i + 1 for i in order]  # rank order, ids are input lines
    assert [r.shown for r in rows] == [True, True, True, False, False]  # 0.55 is past N, 0.2 under the threshold
    table = list(csv.DictReader(io.StringIO(to_csv(rows).decode("utf-8-sig"))))
    assert list(table[0]) == COLUMNS
    assert [int(r["ID"]) for r in table] == [1, 2, 3, 4, 5]
    assert [float(r["Normalized Score"]) for r in table] == pytest.approx(scores)
    assert to_csv(rows).startswith(b"\xef\xbb\xbf")  # spreadsheet programs then read Chinese correctly


def test_a_source_file_is_offered_for_download_only_when_it_is_not_a_link(tmp_path):
    """Issue 32: the download button served whatever a symbolic link at a document's source led to."""
    from app.identity import Caller
    from app.ui.components.cards import source_file

    secret = tmp_path / "kb.toml"
    secret.write_text('client_secret = "s3cr3t-value"\n')
    share = (tmp_path / "share").resolve()
    share.mkdir()
    real = share / "policy.md"
    real.write_text("# Policy\n")
    anyone = Caller("bob", ())
    assert source_file(_row(0.9, source=str(real)), anyone) == real
    assert source_file(_row(0.9, source=str(real), acl=("hr",)), anyone) is None  # not theirs to read
    real.unlink()
    real.symlink_to(secret)  # swapped for a link after it was indexed
    assert source_file(_row(0.9, source=str(real)), anyone) is None
    (tmp_path / "alias").symlink_to(share, target_is_directory=True)
    (share / "other.md").write_text("# Other\n")
    assert source_file(_row(0.9, source=str(tmp_path / "alias" / "other.md")), anyone) is None  # a linked folder
