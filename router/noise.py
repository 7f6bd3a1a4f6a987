"""Which differing fields are noise right now: Diffy's primary-vs-secondary, over a window.

Place in the flow: `shadow` feeds every primary-vs-primary comparison (`noise`) and every
primary-vs-candidate comparison (`judge`) of one route into its `NoiseWindow`. Both are
remembered for the last `window` comparisons of their kind, as sets of generalised field
paths (`results[*].ts`). A field counts as noise only while the primary disagrees with
itself on it at a comparable rate: the candidate differs on it at most `ratio` times as
often as the primary does. A field that stops being noisy on the primary (one 503 on a
re-ask, long ago) decays out of the window, and a candidate that differs on a field far
more often than the primary does is held to it at once — noise never blinds the diff.

Windows are counted in comparisons, not seconds, so a test can say exactly what is noise.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable


class NoiseWindow:
    def __init__(self, *, window: int = 100, ratio: float = 2.0) -> None:
        self.window, self.ratio = window, ratio
        self._noise: deque[frozenset[str]] = deque()  # primary vs primary, newest last
        self._raw: deque[frozenset[str]] = deque()  # primary vs candidate
        self._noise_count: Counter[str] = Counter()  # field → comparisons in _noise differing on it
        self._raw_count: Counter[str] = Counter()

    def noise(self, fields: Iterable[str]) -> None:
        """Record one comparison of the primary with itself (fields that differed)."""
        _push(self._noise, self._noise_count, frozenset(fields), self.window)

    def judge(self, fields: Iterable[str]) -> tuple[list[str], list[str]]:
        """Record one primary-vs-candidate comparison; (real differences, noise) among `fields`."""
        seen = frozenset(fields)
        _push(self._raw, self._raw_count, seen, self.window)
        real = [f for f in sorted(seen) if not self.is_noise(f)]
        return real, sorted(seen.difference(real))

    def is_noise(self, field: str) -> bool:
        noisy = self._noise_count[field]
        if not noisy:
            return False
        # raw_rate <= ratio × noise_rate, without dividing (either window may still be filling)
        return self._raw_count[field] * len(self._noise) <= self.ratio * noisy * len(self._raw)

    def summary(self) -> dict[str, object]:
        """The window as it stands: counts (summable over workers) and each field's verdict."""
        net = sum(1 for fields in self._raw if any(not self.is_noise(f) for f in fields))
        fields = {f: {"raw": self._raw_count[f], "noise": self._noise_count[f], "is_noise": self.is_noise(f)}
                  for f in sorted(set(self._raw_count) | set(self._noise_count))}
        return {"compared": len(self._raw), "noise_compared": len(self._noise),
                "differing_raw": sum(1 for f in self._raw if f), "differing": net,
                "noise_differing": sum(1 for f in self._noise if f), "fields": fields}


def _push(window: deque[frozenset[str]], counts: Counter[str], fields: frozenset[str], size: int) -> None:
    window.append(fields)
    counts.update(fields)
    if len(window) > size:
        for field in window.popleft():
            counts[field] -= 1
            if not counts[field]:
                del counts[field]


__all__ = ["NoiseWindow"]
