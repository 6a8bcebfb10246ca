"""The iCE40 PLL (``SB_PLL40_CORE``) and the search for its dividers.

Ref: Lattice TN1251 "iCE40 sysCLOCK PLL Design and Usage Guide"; the search is the one of
icestorm's ``icepll`` (SIMPLE feedback), so ``icepll -i 12 -o 50`` gives the same dividers.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["PllParams", "pll_params", "Ice40Pll", "sync_domain"]

# Limits of the iCE40 PLL in SIMPLE feedback mode (Hz).
_PFD_RANGE = (10e6, 133e6)
_VCO_RANGE = (533e6, 1066e6)
_OUT_RANGE = (16e6, 275e6)


class PllParams:
    """Dividers of one PLL setting and the frequency they give.

    Attributes
    ----------
    divr, divf, divq, filter_range : int
        ``DIVR`` (reference divider), ``DIVF`` (feedback divider), ``DIVQ`` (output divider,
        a power of two) and ``FILTER_RANGE`` of ``SB_PLL40_CORE``.
    f_out_hz : float
        ``f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)``.
    """

    def __init__(self, divr, divf, divq, filter_range, f_out_hz):
        self.divr, self.divf, self.divq, self.filter_range = divr, divf, divq, filter_range
        self.f_out_hz = f_out_hz

    def __repr__(self):
        return (
            f"PllParams(divr={self.divr}, divf={self.divf}, divq={self.divq}, "
            f"filter_range={self.filter_range}, f_out_hz={self.f_out_hz})"
        )


def _filter_range(f_pfd):
    for limit, value in ((17e6, 1), (26e6, 2), (44e6, 3), (66e6, 4), (101e6, 5)):
        if f_pfd < limit:
            return value
    return 6


def pll_params(f_in_hz, f_out_hz, *, at_least=False):
    """Dividers whose output is closest to ``f_out_hz`` (icepll's search order and tie-break).

    Parameters
    ----------
    f_in_hz : float
        Reference clock (the board's 12 MHz oscillator).
    f_out_hz : float
        Requested output, 16..275 MHz.
    at_least : bool
        Only settings at or above ``f_out_hz`` (so that timing met at the request holds).

    Returns
    -------
    PllParams

    Raises
    ------
    ValueError
        A request outside the PLL's range, or no setting (at or above it).
    """
    if not _OUT_RANGE[0] <= f_out_hz <= _OUT_RANGE[1]:
        raise ValueError(f"PLL output must be 16..275 MHz, not {f_out_hz / 1e6:g} MHz")
    best = None
    for divr in range(16):
        f_pfd = f_in_hz / (divr + 1)
        if not _PFD_RANGE[0] <= f_pfd <= _PFD_RANGE[1]:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not _VCO_RANGE[0] <= f_vco <= _VCO_RANGE[1]:
                continue
            for divq in range(1, 7):
                f = f_vco / (1 << divq)
                if at_least and f < f_out_hz:
                    continue
                if best is None or abs(f - f_out_hz) < abs(best.f_out_hz - f_out_hz):
                    best = PllParams(divr, divf, divq, _filter_range(f_pfd), f)
    if best is None:
        raise ValueError(f"no PLL setting gives {f_out_hz / 1e6:g} MHz from {f_in_hz / 1e6:g} MHz")
    return best


class Ice40Pll(wiring.Component):
    """``SB_PLL40_CORE`` in SIMPLE feedback mode: the fabric clock from the board oscillator.

    Parameters
    ----------
    f_in_hz : float
        Reference frequency on ``clk_in``.
    f_out_hz : float
        Requested output frequency; the closest setting at or above it is used
        (:attr:`params`, :attr:`f_out_hz`).

    Members
    -------
    clk_in : :py:`In(1)`
        Reference clock (from a pad; nextpnr routes it to the PLL).
    clk_out : :py:`Out(1)`
        ``PLLOUTGLOBAL``: the generated clock, on a global buffer.
    lock : :py:`Out(1)`
        The PLL is locked (asynchronous; use it through a reset synchroniser).

    Timing
    ------
    Only synthesisable for iCE40 (a black box elsewhere): simulation tops are built without it.
    """

    def __init__(self, *, f_in_hz, f_out_hz):
        self.params = pll_params(f_in_hz, f_out_hz, at_least=True)
        self.f_in_hz = f_in_hz
        self.f_out_hz = self.params.f_out_hz
        super().__init__({"clk_in": In(1), "clk_out": Out(1), "lock": Out(1)})

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.pll = Instance(
            "SB_PLL40_CORE",
            p_FEEDBACK_PATH="SIMPLE",
            p_PLLOUT_SELECT="GENCLK",
            p_DIVR=p.divr,
            p_DIVF=p.divf,
            p_DIVQ=p.divq,
            p_FILTER_RANGE=p.filter_range,
            i_REFERENCECLK=self.clk_in,
            i_RESETB=1,
            i_BYPASS=0,
            o_PLLOUTGLOBAL=self.clk_out,
            o_LOCK=self.lock,
        )
        return m


def sync_domain(m, pll, clk_in):
    """Give an FPGA top its ``sync`` domain; returns the PLL's lock (constant 1 without one).

    With ``pll`` (an :class:`Ice40Pll`), the domain's clock is the PLL's output from ``clk_in``
    and its reset is held until the PLL locks (through a reset synchroniser). With ``pll=None``
    (simulation tops) the default domain's ``clk`` and ``rst`` ports are used.
    """
    lock = Signal()
    if pll is None:
        m.d.comb += lock.eq(1)
        return lock
    m.domains.sync = ClockDomain("sync")
    m.submodules.pll = pll
    m.d.comb += [pll.clk_in.eq(clk_in), ClockSignal("sync").eq(pll.clk_out), lock.eq(pll.lock)]
    m.submodules.reset = ResetSynchronizer(~pll.lock, domain="sync")
    return lock
