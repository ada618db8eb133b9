from __future__ import annotations

import pytest

from rerank.engines.cross_encoder import CrossEncoderReranker
from rerank.types import RerankerOptions
from rerank.windows import aggregate, pair_lengths, split_windows

QUERY = "What is the deadline for expense claims?"
FILLER = ("Employees may take annual leave with their manager's approval. The VPN must be used when working "
          "remotely. 员工应当定期更换密码。")
ANSWER = "Expense claims must be submitted within thirty days of travel."


@pytest.fixture(scope="module")
def long_passage() -> str:
    return " ".join([FILLER] * 25) + " " + ANSWER  # far over max_length=64; the answer is at the very end


@pytest.mark.parametrize("engine_name", ["bert_engine", "xlmr_engine"])
def test_long_passage_is_windowed_not_truncated(request, engine_name, long_passage):
    engine = request.getfixturevalue(engine_name)
    tok, ce = engine.tokenizer, engine.cross_encoder
    assert pair_lengths(tok, QUERY, [long_passage])[0] > 5 * engine.max_length

    windows = split_windows(tok, QUERY, long_passage, engine.max_length)
    assert len(windows) > 5
    # Every window fits with the whole query, counted by an independent tokenizer call.
    for w in windows:
        ids = tok(QUERY, w.text)["input_ids"]
        assert len(ids) <= engine.max_length
        assert w.text == long_passage[w.start:w.end]
    # Windows overlap and cover the passage from its first to its last character: the answer is read.
    assert windows[0].start == 0 and windows[-1].end == len(long_passage.rstrip())
    for a, b in zip(windows, windows[1:], strict=False):
        assert b.start < a.end, "consecutive windows overlap"
    assert windows[-1].text.endswith("thirty days of travel.")

    # Manually windowed scoring with the plain CrossEncoder equals the engine's aggregated score.
    import torch

    manual = [float(s) for s in ce.predict([(QUERY, w.text) for w in windows], activation_fn=torch.nn.Identity(),
                                            batch_size=4)]
    raw, score = engine.score(QUERY, [long_passage])[0]
    assert raw == pytest.approx(max(manual), abs=1e-5)
    # … which is not what silent truncation gives (only the first max_length tokens).
    truncated = float(ce.predict([(QUERY, long_passage)], activation_fn=torch.nn.Identity())[0])
    assert raw != pytest.approx(truncated, abs=1e-6)


def test_aggregation_modes(tiny_xlmr, long_passage, xlmr_engine):
    import torch

    windows = split_windows(xlmr_engine.tokenizer, QUERY, long_passage, 64)
    manual = [float(s) for s in xlmr_engine.cross_encoder.predict(
        [(QUERY, w.text) for w in windows], activation_fn=torch.nn.Identity())]
    for how, expected in (("max", max(manual)), ("mean", sum(manual) / len(manual)), ("first", manual[0])):
        engine = CrossEncoderReranker(str(tiny_xlmr), RerankerOptions(device="cpu", max_length=64, long_passage=how)).load()
        assert engine.score(QUERY, [long_passage])[0][0] == pytest.approx(expected, abs=1e-5)


def test_short_passage_is_one_window(bert_engine):
    windows = split_windows(bert_engine.tokenizer, QUERY, ANSWER, 64)
    assert len(windows) == 1 and windows[0].text == ANSWER


def test_query_too_long_for_max_length_is_an_error(bert_engine):
    from rerank.errors import RerankerParameterError

    with pytest.raises(RerankerParameterError, match="max_length.*query is kept whole"):
        split_windows(bert_engine.tokenizer, " ".join(["leave"] * 60), FILLER * 5, 64)


def test_aggregate_validates():
    assert aggregate([1.0, 3.0, 2.0], "max") == 3.0
    assert aggregate([1.0, 3.0, 2.0], "mean") == 2.0
    assert aggregate([1.0, 3.0, 2.0], "first") == 1.0
    with pytest.raises(ValueError, match="long_passage"):
        aggregate([1.0], "median")
