"""A small CSR bus and a register bank built from a :class:`RegisterMap`.

amaranth-soc is not on PyPI, so this is an in-house bank of the same shape: the register
map is data (``rtl/core/regs.py``), the bank turns it into flops, and the testbench
addresses the same map by name.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CsrSignature", "CsrBank", "port_name"]


class CsrSignature(wiring.Signature):
    """Initiator view of a simple synchronous CSR bus.

    Parameters
    ----------
    addr_width : int
        Word-address width.
    data_width : int
        Register width.

    Members
    -------
    addr : :py:`Out(addr_width)`
        Word address of the access.
    w_stb : :py:`Out(1)`
        Write strobe: ``w_data`` is written to ``addr`` on this cycle.
    w_data : :py:`Out(data_width)`
        Write data.
    r_stb : :py:`Out(1)`
        Read strobe.
    r_data : :py:`In(data_width)`
        Read data, valid on the cycle after ``r_stb`` (registered) and held until the next read.
    """

    def __init__(self, *, addr_width=8, data_width=32):
        if not isinstance(addr_width, int) or addr_width < 1:
            raise TypeError(f"addr_width must be a positive integer, not {addr_width!r}")
        if not isinstance(data_width, int) or data_width < 1:
            raise TypeError(f"data_width must be a positive integer, not {data_width!r}")
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__(
            {
                "addr": Out(addr_width),
                "w_stb": Out(1),
                "w_data": Out(data_width),
                "r_stb": Out(1),
                "r_data": In(data_width),
            }
        )

    def __eq__(self, other):
        return (
            type(other) is CsrSignature and other.addr_width == self.addr_width and other.data_width == self.data_width
        )

    def __hash__(self):
        return hash((CsrSignature, self.addr_width, self.data_width))

    def __repr__(self):
        return f"CsrSignature(addr_width={self.addr_width}, data_width={self.data_width})"


def port_name(register):
    """Member name of a register in :class:`CsrBank`'s signature."""
    return register.name.lower()


class CsrBank(wiring.Component):
    """Register bank for a :class:`~cimdv.rtl.core.regs.RegisterMap`.

    Parameters
    ----------
    regmap : RegisterMap
        Registers to implement. Only the bits covered by fields are stored; others read 0.
    addr_width : int
        Width of the bus address.

    Members
    -------
    bus : :py:`In(CsrSignature)`
        The CSR bus (this bank is the target).
    busy : :py:`In(1)`
        While high, writes to ``rw`` registers are refused and ``config_busy`` pulses.
    <name> : :py:`Out(32)` for ``rw`` and ``w1c`` registers
        Current register value.
    <name> : :py:`In(32)` for ``ro`` registers
        Value returned by reads.
    <name> : :py:`Out(32)` for ``wo`` registers
        One-cycle strobe carrying the written bits (0 otherwise).
    <name>_set : :py:`In(32)` for ``w1c`` registers
        Bits to set this cycle (setting wins over a simultaneous clear).
    config_busy : :py:`Out(1)`
        Pulses when an ``rw`` write is refused because of ``busy``.
    bad_addr : :py:`Out(1)`
        Pulses on a read or write of an unmapped address.

    Timing
    ------
    Writes take effect on the clock edge that ends the ``w_stb`` cycle. Read data is
    registered: it appears on ``bus.r_data`` one cycle after ``r_stb`` and is held.
    """

    def __init__(self, regmap, *, addr_width=8):
        self.regmap = regmap
        self.addr_width = addr_width
        for reg in regmap:
            if reg.addr >= 1 << addr_width:
                raise ValueError(f"register {reg.name} at 0x{reg.addr:x} does not fit addr_width={addr_width}")
        members = {
            "bus": In(CsrSignature(addr_width=addr_width)),
            "busy": In(1),
            "config_busy": Out(1),
            "bad_addr": Out(1),
        }
        for reg in regmap:
            name = port_name(reg)
            if reg.access == "ro":
                members[name] = In(32)
            elif reg.access in ("rw", "wo"):
                members[name] = Out(32)
            elif reg.access == "w1c":
                members[name] = Out(32)
                members[name + "_set"] = In(32)
            else:
                raise ValueError(f"register {reg.name} has unknown access {reg.access!r}")
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        stored = {}
        for reg in self.regmap:
            if reg.access in ("rw", "w1c"):
                mask = 0
                for f in reg.fields:
                    mask |= f.mask
                store = Signal(32, name=f"{port_name(reg)}_q", init=reg.reset)
                stored[reg.name] = (store, mask)
                m.d.comb += getattr(self, port_name(reg)).eq(store)

        mapped = Signal()
        with m.Switch(bus.addr):
            for reg in self.regmap:
                with m.Case(reg.addr):
                    m.d.comb += mapped.eq(1)
            with m.Default():
                m.d.comb += mapped.eq(0)

        m.d.comb += self.bad_addr.eq((bus.w_stb | bus.r_stb) & ~mapped)

        # Writes.
        for reg in self.regmap:
            name = port_name(reg)
            hit = bus.w_stb & (bus.addr == reg.addr)
            if reg.access == "rw":
                store, mask = stored[reg.name]
                with m.If(hit & ~self.busy):
                    m.d.sync += store.eq(bus.w_data & mask)
            elif reg.access == "wo":
                mask = 0
                for f in reg.fields:
                    mask |= f.mask
                m.d.comb += getattr(self, name).eq(hit.replicate(32) & bus.w_data & mask)
            elif reg.access == "w1c":
                store, mask = stored[reg.name]
                clear = hit.replicate(32) & bus.w_data
                m.d.sync += store.eq(((store & ~clear) | getattr(self, name + "_set")) & mask)
        rw_hit = Signal()
        for reg in self.regmap:
            if reg.access == "rw":
                with m.If(bus.addr == reg.addr):
                    m.d.comb += rw_hit.eq(1)
        m.d.comb += self.config_busy.eq(bus.w_stb & rw_hit & self.busy)

        # Registered reads.
        with m.If(bus.r_stb):
            with m.Switch(bus.addr):
                for reg in self.regmap:
                    with m.Case(reg.addr):
                        if reg.access == "wo":
                            m.d.sync += bus.r_data.eq(0)
                        elif reg.access == "ro":
                            m.d.sync += bus.r_data.eq(getattr(self, port_name(reg)))
                        else:
                            m.d.sync += bus.r_data.eq(stored[reg.name][0])
                with m.Default():
                    m.d.sync += bus.r_data.eq(0)
        return m
