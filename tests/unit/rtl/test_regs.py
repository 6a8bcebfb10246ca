"""The register map, its generated document, and the model's restated constants agree."""

from pathlib import Path

import pytest

from cimdv.model import encoding as model_enc
from cimdv.rtl.core import layouts
from cimdv.rtl.core.regs import ErrorBit, register_map, render_markdown

DOC = Path(__file__).resolve().parents[3] / "docs" / "register-map.md"


def test_register_map_doc_is_generated_from_the_map():
    assert DOC.read_text() == render_markdown(), "run: python -m cimdv.rtl.core.regs > docs/register-map.md"


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (16, 12), (6, 20), (256, 256), (1024, 3)])
def test_map_is_consistent(rows, cols):
    regmap = register_map(rows=rows, cols=cols)
    lines = max(rows, cols)
    assert len(regmap.array("LINE_MODE")) == -(-lines // 16)
    assert len(regmap.array("OUT_MASK")) == -(-lines // 32)
    for reg in regmap:
        assert reg.addr < 256 and reg.access in ("rw", "ro", "w1c", "wo")
        used = 0
        for f in reg.fields:
            assert f.offset + f.width <= 32, (reg.name, f.name)
            assert not used & f.mask, f"{reg.name}.{f.name} overlaps another field"
            used |= f.mask
            assert 0 <= f.reset < 1 << f.width


def test_error_bits_are_unique_and_named_in_the_error_register():
    names = ErrorBit.names()
    assert len(set(names.values())) == len(names)
    fields = {f.name.upper(): f.offset for f in register_map(rows=4, cols=4)["ERROR"].fields}
    assert fields == names


def test_model_restates_rtl_enums_and_error_names():
    for rtl_enum, model_enum in (
        (layouts.LineMode, model_enc.LineMode),
        (layouts.MacroOp, model_enc.MacroOp),
        (layouts.DriveCode, model_enc.DriveCode),
    ):
        assert {m.name: m.value for m in rtl_enum} == {m.name: int(m.value) for m in model_enum}
    assert set(model_enc.ERROR_NAMES) == {name for name, bit in ErrorBit.names().items() if bit in ErrorBit.CONFIG}
