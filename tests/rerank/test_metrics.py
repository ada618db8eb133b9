import pytest

from rerank.validation.metrics import kendall_tau, mean_kendall_by_group, pairwise_agreement, ranks_within


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1], [1]) is None


def test_pairwise_agreement_and_ranks():
    groups = ["a", "a", "a", "b", "b"]
    labels = [1, 0, 0, 1, 0]
    assert pairwise_agreement(groups, labels, [0.9, 0.1, 0.2, 0.8, 0.3]) == 1.0
    assert pairwise_agreement(groups, labels, [0.1, 0.9, 0.2, 0.8, 0.3]) == pytest.approx(1 / 3)
    assert pairwise_agreement(["a", "a"], [1, 1], [0.1, 0.2]) is None
    assert ranks_within(groups, [0.1, 0.9, 0.2, 0.8, 0.3]) == [3, 1, 2, 1, 2]
    assert mean_kendall_by_group(groups, [1, 2, 3, 1, 2], [1, 2, 3, 2, 1]) == pytest.approx(0.0)
