"""Register values of a core configuration, from the RTL's own register map (no simulator needed).

Every path that configures a core uses these: the CSR bus VIP of the core bench, and the
host commands of the chip bench (one CSR_WRITE per register).
"""

import contextlib

from cimdv.model.exact import CoreConfig
from cimdv.model.writeverify import Outcome
from cimdv.rtl.core.regs import LINES_PER_WORD, NEURONS_PER_WORD

#: The programming-port fields of ``WriteVerifySettings``, by register.
PROG_FIELDS = {
    "PROG_TARGET": {"target": "target", "tol": "tol"},
    "PROG_SET": {"start": "set_start", "end": "set_end", "step": "set_step"},
    "PROG_RESET": {"start": "reset_start", "end": "reset_end", "step": "reset_step"},
    "PROG_LIMITS": {"pulse_limit": "pulse_limit", "iter_limit": "iter_limit", "max_ops": "max_ops"},
}

__all__ = [
    "default_config",
    "encode_fields",
    "decode_field",
    "config_writes",
    "core_config_writes",
    "prog_settings_writes",
    "decode_prog_result",
]


def default_config(rows, cols, **overrides):
    """The benches' default legal :class:`~cimdv.model.exact.CoreConfig` for a ``rows`` x ``cols``
    core (forward, signed 4-bit inputs, 8-bit outputs, MAX_COUNT 127), with ``overrides``."""
    fields = dict(rows=rows, cols=cols, backward=False, signed=True, in_bits=4, out_bits=8, pulse_mult=1, max_count=127)
    return CoreConfig(**(fields | overrides))


def encode_fields(regmap, reg, **fields):
    """Value of register ``reg`` with the named fields set (the others at their reset value)."""
    try:
        register = regmap[reg]
    except KeyError:
        raise ValueError(f"reg: no register named {reg!r}") from None
    value = register.reset
    for name, field_value in fields.items():
        f = register.field(name)
        if not 0 <= field_value < 1 << f.width:
            raise ValueError(f"{reg}.{name} must fit {f.width} bits, not {field_value!r}")
        value = (value & ~f.mask) | (field_value << f.offset)
    return value


def decode_field(regmap, reg, value, name):
    """Field ``name`` of register ``reg`` in the register value ``value``."""
    f = regmap[reg].field(name)
    return (value >> f.offset) & ((1 << f.width) - 1)


def config_writes(
    regmap,
    *,
    lines,
    backward,
    signed,
    in_bits,
    out_bits,
    pulse_mult,
    max_count,
    noise_pulses=0,
    line_modes=None,
    out_mask=None,
    timing,
    batch=1,
    watchdog=100_000,
):
    """``[(register, value)]`` writing raw configuration values (they may be illegal: the
    refusal tests use that); ``line_modes``/``out_mask`` default to every line on."""
    writes = [
        (
            "MODE",
            encode_fields(
                regmap,
                "MODE",
                backward=backward,
                signed=signed,
                in_bits=in_bits,
                out_bits=out_bits,
                pulse_mult=pulse_mult,
            ),
        ),
        ("MAX_COUNT", encode_fields(regmap, "MAX_COUNT", max_count=max_count)),
        ("BATCH", encode_fields(regmap, "BATCH", batch=batch)),
        ("NOISE_PULSES", encode_fields(regmap, "NOISE_PULSES", noise_pulses=noise_pulses)),
        ("WATCHDOG", encode_fields(regmap, "WATCHDOG", watchdog=watchdog)),
    ]
    writes += [(name, value) for name, value in timing.items()]
    line_modes = [1] * lines if line_modes is None else [int(v) for v in line_modes]
    out_mask = [1] * lines if out_mask is None else [int(v) for v in out_mask]
    for w, reg in enumerate(regmap.array("LINE_MODE")):
        chunk = line_modes[w * LINES_PER_WORD : (w + 1) * LINES_PER_WORD]
        writes.append((reg.name, sum(v << (2 * k) for k, v in enumerate(chunk))))
    for w, reg in enumerate(regmap.array("OUT_MASK")):
        chunk = out_mask[w * NEURONS_PER_WORD : (w + 1) * NEURONS_PER_WORD]
        writes.append((reg.name, sum(v << k for k, v in enumerate(chunk))))
    return writes


def core_config_writes(regmap, cfg, *, timing, batch=1, watchdog=100_000):
    """``[(register, value)]`` for a legal :class:`~cimdv.model.exact.CoreConfig`."""
    return config_writes(
        regmap,
        lines=max(cfg.rows, cfg.cols),
        backward=int(cfg.backward),
        signed=int(cfg.signed),
        in_bits=cfg.in_bits,
        out_bits=cfg.out_bits,
        pulse_mult=cfg.pulse_mult,
        max_count=cfg.max_count,
        noise_pulses=cfg.noise_pulses,
        line_modes=[int(v) for v in cfg.line_modes],
        out_mask=[int(v) for v in cfg.out_mask],
        timing=timing,
        batch=batch,
        watchdog=watchdog,
    )


def prog_settings_writes(regmap, settings, *, row=None, col=None):
    """``[(register, value)]`` of the PROG_* setting registers for a ``WriteVerifySettings``
    (and ``PROG_CELL`` when ``row``/``col`` are given)."""
    writes = [
        (reg, encode_fields(regmap, reg, **{f: getattr(settings, name) for f, name in fields.items()}))
        for reg, fields in PROG_FIELDS.items()
    ]
    if row is not None or col is not None:
        writes.append(("PROG_CELL", encode_fields(regmap, "PROG_CELL", row=row, col=col)))
    return writes


def decode_prog_result(regmap, result, pulses):
    """The ``PROG_RESULT`` and ``PROG_PULSES`` register values as a dict (``outcome`` an
    :class:`~cimdv.model.writeverify.Outcome` when it is one, else the raw code)."""
    outcome = decode_field(regmap, "PROG_RESULT", result, "outcome")
    with contextlib.suppress(ValueError):  # not an outcome code: the scoreboard reports the raw value
        outcome = Outcome(outcome)
    return {
        "outcome": outcome,
        "reading": decode_field(regmap, "PROG_RESULT", result, "reading"),
        "iterations": decode_field(regmap, "PROG_RESULT", result, "iterations"),
        "set_pulses": decode_field(regmap, "PROG_PULSES", pulses, "set"),
        "reset_pulses": decode_field(regmap, "PROG_PULSES", pulses, "reset"),
    }
