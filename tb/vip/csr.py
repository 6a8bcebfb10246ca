"""Verification IP for the CSR bus of ``rtl/common/csr.py`` (``<prefix>__addr`` etc.).

Registers and fields are addressed by the names of the RTL's own register map, so the
bench cannot disagree with the design about an address or a bit position.
"""

from cocotb.triggers import FallingEdge, Lock, ReadOnly

from .config import encode_fields

__all__ = ["CsrMaster"]


class CsrMaster:
    """Active initiator on a CSR bus.

    Parameters
    ----------
    dut : cocotb handle
    clock : cocotb handle
    regmap : cimdv.rtl.core.regs.RegisterMap
    prefix : str
        Member name of the bus (``csr``).

    Attributes
    ----------
    read_callbacks : list of callable
        Called with ``(addr, value)`` after every read (transaction-level observers such as coverage).
    """

    def __init__(self, dut, clock, regmap, prefix="csr"):
        self.addr = getattr(dut, f"{prefix}__addr")
        self.w_stb = getattr(dut, f"{prefix}__w_stb")
        self.w_data = getattr(dut, f"{prefix}__w_data")
        self.r_stb = getattr(dut, f"{prefix}__r_stb")
        self.r_data = getattr(dut, f"{prefix}__r_data")
        self.clock = clock
        self.regmap = regmap
        self._lock = Lock()
        self.read_callbacks = []
        self.w_stb.value = 0
        self.r_stb.value = 0
        self.addr.value = 0
        self.w_data.value = 0

    def _addr(self, reg):
        if isinstance(reg, int):
            return reg
        try:
            return self.regmap[reg].addr
        except KeyError:
            raise ValueError(f"reg: no register named {reg!r}") from None

    async def write(self, reg, value):
        """Write a whole register (by name, or a raw address for negative tests)."""
        if not 0 <= value < 1 << 32:
            raise ValueError(f"value must fit 32 bits, not {value!r}")
        async with self._lock:
            await FallingEdge(self.clock)
            self.addr.value = self._addr(reg)
            self.w_data.value = value
            self.w_stb.value = 1
            await FallingEdge(self.clock)
            self.w_stb.value = 0

    async def read(self, reg):
        """Read a whole register; returns an int."""
        async with self._lock:
            await FallingEdge(self.clock)
            self.addr.value = self._addr(reg)
            self.r_stb.value = 1
            await FallingEdge(self.clock)
            self.r_stb.value = 0
            await ReadOnly()
            value = self.r_data.value.to_unsigned()
        addr = self._addr(reg)
        for callback in self.read_callbacks:
            callback(addr, value)
        return value

    def encode(self, reg, **fields):
        """Register value with the named fields set (others at their reset value)."""
        return encode_fields(self.regmap, reg, **fields)

    async def write_fields(self, reg, **fields):
        """Write a register built by :meth:`encode` (fields not named take reset values)."""
        await self.write(reg, self.encode(reg, **fields))

    async def read_field(self, reg, name):
        f = self.regmap[reg].field(name)
        return (await self.read(reg) >> f.offset) & ((1 << f.width) - 1)
