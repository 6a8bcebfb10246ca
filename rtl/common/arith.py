"""Small arithmetic builders shared by the RTL blocks."""

__all__ = ["tree_sum"]


def tree_sum(values):
    """The sum of ``values`` (Amaranth values) as a balanced adder tree: each level one carry
    chain deep, so the depth grows with the log of the count. A popcount is ``tree_sum(bits)``."""
    values = list(values)
    if not values:
        raise ValueError("tree_sum needs at least one value")
    while len(values) > 1:
        pairs = [values[k] + values[k + 1] for k in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            pairs.append(values[-1])
        values = pairs
    return values[0]
