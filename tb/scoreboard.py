"""Scoreboards: compare what monitors saw with what the model predicted.

The scoreboard compares transactions, never signals. It does not raise inside monitor
callbacks (that would kill the monitor); it records every mismatch and :meth:`check`
fails the test at the end with all of them listed.
"""

from collections import deque

__all__ = ["InOrderScoreboard"]


class InOrderScoreboard:
    """Checks that actual items arrive in the order and with the values expected.

    Parameters
    ----------
    name : str
        Used in messages.
    compare : callable(expected, actual) -> list[str]
        Returns the differences between two items (empty list = equal).
    max_reported : int
        How many mismatching items to describe in full.
    """

    def __init__(self, name, compare, max_reported=5):
        self.name = name
        self.compare = compare
        self.max_reported = max_reported
        self.expected = deque()
        self.matches = 0
        self.mismatches = []
        self.unexpected = 0

    def add_expected(self, item):
        self.expected.append(item)

    def add_actual(self, item):
        if not self.expected:
            self.unexpected += 1
            self.mismatches.append(
                f"{self.name}: output #{self.matches + len(self.mismatches)} arrived with nothing expected"
            )
            return
        want = self.expected.popleft()
        diffs = self.compare(want, item)
        if diffs:
            index = self.matches + len(self.mismatches)
            self.mismatches.append(f"{self.name}: item #{index}: " + "; ".join(diffs))
        else:
            self.matches += 1

    def check(self, *, drained=True):
        """Raise AssertionError listing every mismatch (and, if ``drained``, missing items)."""
        problems = list(self.mismatches[: self.max_reported])
        if len(self.mismatches) > self.max_reported:
            problems.append(f"... and {len(self.mismatches) - self.max_reported} more mismatching items")
        if drained and self.expected:
            problems.append(f"{self.name}: {len(self.expected)} expected item(s) never arrived")
        if problems:
            raise AssertionError(
                f"{self.name} scoreboard: {self.matches} matched, {len(self.mismatches)} mismatched\n  "
                + "\n  ".join(problems)
            )
        return self.matches
