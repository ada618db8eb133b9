"""Order agreement and score shift, for `kb models check --golden` and `kb models parity`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from itertools import combinations


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b between two score lists (ties handled); None when fewer than two items or no variation."""
    if len(a) != len(b):
        raise ValueError(f"kendall_tau needs equal lengths; got {len(a)} and {len(b)}")
    concordant = discordant = ties_a = ties_b = 0
    for i, j in combinations(range(len(a)), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif (da > 0) == (db > 0):
            concordant += 1
        else:
            discordant += 1
    denom = ((concordant + discordant + ties_a) * (concordant + discordant + ties_b)) ** 0.5
    return None if denom == 0 else (concordant - discordant) / denom


def pairwise_agreement(groups: Sequence[Hashable], labels: Sequence[float], scores: Sequence[float]) -> float | None:
    """Share of same-query pairs with different labels that the scores order the same way (ties count half).
    None when no query has two differently-labelled passages."""
    by_group: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    agree = total = 0.0
    for idx in by_group.values():
        for i, j in combinations(idx, 2):
            if labels[i] == labels[j]:
                continue
            total += 1
            hi, lo = (i, j) if labels[i] > labels[j] else (j, i)
            agree += 1.0 if scores[hi] > scores[lo] else 0.5 if scores[hi] == scores[lo] else 0.0
    return None if total == 0 else agree / total


def ranks_within(groups: Sequence[Hashable], scores: Sequence[float]) -> list[int]:
    """1-based rank of each item among the items of its group (best score first, ties by position)."""
    by_group: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    ranks = [0] * len(scores)
    for idx in by_group.values():
        for r, i in enumerate(sorted(idx, key=lambda i: (-scores[i], i)), start=1):
            ranks[i] = r
    return ranks


def mean_kendall_by_group(groups: Sequence[Hashable], a: Sequence[float], b: Sequence[float]) -> float | None:
    by_group: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    taus = [t for idx in by_group.values() if len(idx) > 1
            if (t := kendall_tau([a[i] for i in idx], [b[i] for i in idx])) is not None]
    return None if not taus else sum(taus) / len(taus)
