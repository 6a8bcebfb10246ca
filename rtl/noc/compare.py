"""Comparisons of an unsigned value with a constant, as plain logic.

Yosys maps ``<``, ``<=``, ``>``, ``>=`` to a carry chain, one iCE40 logic cell per bit whose LUT
is left unused. Against a constant the same test is a handful of equalities of the high bits,
which the LUT mapper packs into a few LUTs: ``value > c`` holds when, at some bit where ``c`` has
a 0, ``value`` has a 1 and agrees with ``c`` above it.
"""

from amaranth.hdl import Cat, Const, Value

__all__ = ["gt_const", "ge_const", "lt_const", "le_const"]


def gt_const(value, c):
    """``value > c`` for an unsigned ``value`` and a constant integer ``c``."""
    value = Value.cast(value)
    if c < 0:
        return Const(1, 1)
    width = len(value)
    if c >= (1 << width) - 1:
        return Const(0, 1)
    terms = []
    for i in range(width):
        if (c >> i) & 1:
            continue
        above = value[i + 1 :]
        terms.append(value[i] & (above == (c >> (i + 1))) if len(above) else value[i])
    return Cat(*terms).any()


def ge_const(value, c):
    """``value >= c`` for an unsigned ``value`` and a constant integer ``c``."""
    return gt_const(value, c - 1)


def lt_const(value, c):
    """``value < c`` for an unsigned ``value`` and a constant integer ``c``."""
    return ~ge_const(value, c)


def le_const(value, c):
    """``value <= c`` for an unsigned ``value`` and a constant integer ``c``."""
    return ~gt_const(value, c)
