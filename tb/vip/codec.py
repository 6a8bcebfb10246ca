"""Fast packing and unpacking of payloads, compiled from the RTL's own Amaranth layouts.

Amaranth's ``Layout.const`` / ``from_bits`` views are exact but cost milliseconds per wide
beat, which would put Python back on the simulator clock. :class:`LayoutCodec` walks a
layout once, records every leaf field's offset, width and signedness, and then packs or
unpacks plain Python values with shifts. Offsets are never hand-written: they come from
the layout object, and ``tests/unit/rtl/test_codec.py`` round-trips against Amaranth's own
views so the two cannot drift.
"""

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["LayoutCodec"]


def _shape_of(shape):
    if isinstance(shape, data.Layout):
        return shape
    if isinstance(shape, type) and issubclass(shape, data.View):  # data.Struct / data.Union classes
        return data.Layout.cast(shape)
    return Shape.cast(shape)


class LayoutCodec:
    """Pack/unpack values of an Amaranth layout as nested dicts and lists of ints.

    Structs map to dicts (field name -> value), arrays to lists, plain shapes to ints
    (sign-extended when the shape is signed).
    """

    def __init__(self, layout):
        self.layout = layout
        self.width = data.Layout.cast(layout).size
        self._mask = (1 << self.width) - 1
        self._decode = self._compile_decode(layout, 0)
        self._encode = self._compile_encode(layout, 0)

    def _compile_decode(self, shape, base):
        shape = _shape_of(shape)
        if isinstance(shape, data.StructLayout):
            parts = [(name, self._compile_decode(f.shape, base + f.offset)) for name, f in shape]
            return lambda v: {name: dec(v) for name, dec in parts}
        if isinstance(shape, data.ArrayLayout):
            elem = _shape_of(shape.elem_shape)
            size = data.Layout.cast(elem).size if isinstance(elem, data.Layout) else elem.width
            parts = [self._compile_decode(shape.elem_shape, base + i * size) for i in range(shape.length)]
            return lambda v: [dec(v) for dec in parts]
        if isinstance(shape, data.Layout):
            raise TypeError(f"layout {shape!r} is not supported by LayoutCodec")
        width, signed, mask = shape.width, shape.signed, (1 << shape.width) - 1
        if signed:
            top = 1 << (width - 1)
            return lambda v: (((v >> base) & mask) ^ top) - top
        return lambda v: (v >> base) & mask

    def _compile_encode(self, shape, base):
        shape = _shape_of(shape)
        if isinstance(shape, data.StructLayout):
            parts = [(name, self._compile_encode(f.shape, base + f.offset)) for name, f in shape]

            def encode_struct(value):
                unknown = set(value) - {name for name, _ in parts}
                if unknown:
                    raise ValueError(f"value has fields {sorted(unknown)} that the layout does not have")
                return sum(enc(value[name]) for name, enc in parts if name in value)

            return encode_struct
        if isinstance(shape, data.ArrayLayout):
            elem = _shape_of(shape.elem_shape)
            size = data.Layout.cast(elem).size if isinstance(elem, data.Layout) else elem.width
            parts = [self._compile_encode(shape.elem_shape, base + i * size) for i in range(shape.length)]

            def encode_array(value):
                if len(value) != len(parts):
                    raise ValueError(f"value has {len(value)} elements, the layout {len(parts)}")
                return sum(enc(v) for enc, v in zip(parts, value, strict=True))

            return encode_array
        width, signed, mask = shape.width, shape.signed, (1 << shape.width) - 1
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, mask)

        def encode_leaf(value):
            value = int(value)
            if not lo <= value <= hi:
                raise ValueError(f"value {value} does not fit {'signed' if signed else 'unsigned'}({width})")
            return (value & mask) << base

        return encode_leaf

    def decode(self, value):
        """Nested Python value of an integer payload."""
        return self._decode(int(value) & self._mask)

    def encode(self, value):
        """Integer payload of a nested Python value (missing struct fields are 0)."""
        return self._encode(value)
