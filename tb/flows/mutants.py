"""``make mutants``: mutation check of the core testbench with Yosys' ``mutate`` pass (docs/mutation.md).

Steps, every output in ``build/mutation/`` (``--out``):

1. the top's Verilog from Amaranth (:func:`cimdv.tb.sim.generate_verilog`) at a small geometry, copied to
   ``<top>.v`` so that Yosys' cell names and ``src`` tags carry a short relative path;
2. Yosys ``read_verilog; hierarchy; proc; opt -nosdff -nodffe; opt_clean`` (:data:`PREPARE`), saved as
   ``design.il``; the unmutated design written back through the same path (``original.v``);
   ``mutate -list N -seed S -o mutations.ys``. ``opt`` merges duplicate cells (Amaranth's Verilog has e.g.
   32 copies of one address compare for a replicated bit) and removes register bits that never change,
   which would otherwise give many mutants that cannot change anything. (``-nosdff -nodffe``: with
   sync-reset/enable flip-flops inferred, the unmutated core fails the programming tests on Icarus, measured
   with Yosys 0.23; the sanity run guards whatever is chosen.);
3. one Yosys run writes every mutant (``mutants/mNNN.v``: ``design -load``, the ``mutate`` command,
   ``write_verilog``), same ports as the original;
4. sanity run: the smoke suite on ``original.v`` must pass, or the flow stops (exit 2);
5. the smoke suite on every mutant, ``--jobs`` at a time, each in its own process group under a watchdog:
   a failing cocotb test kills the mutant, a hang (watchdog) kills it with reason ``timeout``;
6. every survivor is classified with Yosys' formal tools (:func:`classify_survivor`);
7. ``report.json`` (:func:`make_report`), a table on stdout, exit 1 when the kill rate is under ``--goal``.

The smoke suite runs in a child process (``python -m cimdv.tb.flows.mutants smoke ...``), which builds and
runs the Verilog through :func:`cimdv.tb.sim.run` with its ``verilog=`` source override.
"""

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cimdv.tb import sim as simflow

__all__ = [
    "DEFAULT_COUNT",
    "DEFAULT_GEOMETRY",
    "PREPARE",
    "SMOKE_MODULE",
    "SMOKE_TESTS",
    "GOAL_ON",
    "FlowError",
    "Mutation",
    "classify_survivor",
    "main",
    "make_report",
    "parse_mutations",
    "parse_sat_counterexample",
    "parse_unproven",
    "run_flow",
    "run_smoke",
]

#: The core geometry of the mutants: tests/dv/test_core.py's "16x12".
DEFAULT_GEOMETRY = {"rows": 16, "cols": 12, "lanes": 4, "pulse_bits": 8}
DEFAULT_COUNT = 60
DEFAULT_SEED = 1
DEFAULT_GOAL = 0.9
SMOKE_MODULE = "cimdv.tb.core.tests"
#: The smoke suite: every cocotb test of tb/core/tests.py that checks the DUT (the four ``expect_fail``
#: checker-negative tests check the bench, not the DUT, and are left out). Order = cocotb's run order.
SMOKE_TESTS = (
    "csr_reset_values",
    "csr_write_readback",
    "zero_input",
    "all_max_unsigned",
    "all_min_signed",
    "alternating_signs",
    "saturation_both_signs",
    "masked_neurons",
    "one_bit_inputs_and_outputs",
    "eight_bit_inputs_and_outputs",
    "backward_mvm",
    "line_modes_pairs_and_padding",
    "padding_drive_codes",
    "pulse_multiplier",
    "noise_injection",
    "back_to_back_with_backpressure",
    "start_port_handshake",
    "status_sticky_bits",
    "neurram_timing",
    "wide_timing_and_counters",
    "noisy_physical_macro",
    "illegal_configs_refused",
    "start_refused_while_error_pending",
    "input_range_refused",
    "input_range_every_lane",
    "input_length_errors",
    "watchdog_input_timeout",
    "watchdog_output_timeout",
    "busy_refusals",
    "abort_run",
    "random_configs_and_vectors",
    "program_converges",
    "program_failing_cells",
    "program_limits",
    "program_locked_refused",
    "program_no_pulse_without_key",
    "program_illegal_settings_refused",
    "program_busy_interlock_and_abort",
)
#: Yosys passes between reading the Verilog and listing mutations (module docstring, step 2).
PREPARE = "proc; opt -nosdff -nodffe; opt_clean"
#: Watchdog of one mutant's smoke run: this many times the sanity run's wall time, plus the floor.
TIMEOUT_FACTOR = 3.0
TIMEOUT_FLOOR_S = 20.0
#: Survivor classification: steps of the bounded check after reset, induction depth, seconds per Yosys call.
BMC_STEPS = 4
INDUCT_STEPS = 4
FORMAL_TIMEOUT_S = 90
#: Which kill rate ``--goal`` applies to: ``relevant`` (survivors proven equivalent left out) or ``all``.
GOAL_ON = ("relevant", "all")


class FlowError(Exception):
    """The flow cannot give a verdict (Yosys failed, the unmutated design fails the smoke suite, ...)."""


# --- the mutation list ---------------------------------------------------------------------------

_FIELDS = ("mode", "module", "cell", "port", "portbit", "ctrlbit", "wire", "wirebit")
_MODES = ("inv", "const0", "const1", "cnot0", "cnot1")


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One line of ``mutate -list``: the Yosys command and its fields."""

    id: int
    command: str
    mode: str
    module: str
    cell: str
    port: str
    portbit: int
    ctrlbit: int | None = None
    wire: str | None = None
    wirebit: int | None = None
    src: tuple[str, ...] = ()

    def location(self) -> dict[str, Any]:
        """Module, cell, port bit and the ``src`` attributes (HDL source lines first) of the mutated cell."""
        hdl = [s for s in self.src if re.search(r"\.py:\d+", s) and "site-packages" not in s]
        return {
            "module": self.module,
            "cell": self.cell,
            "port": f"{self.port}[{self.portbit}]",
            "wire": None if self.wire is None else f"{self.wire}[{self.wirebit}]",
            "src": hdl[0] if hdl else (self.src[0] if self.src else None),
            "src_all": list(self.src),
        }


def parse_mutations(text: str) -> list[Mutation]:
    """The mutations of a ``mutate -list N -o FILE`` file (one ``mutate ...`` command per line), numbered from 1.

    Raises :class:`ValueError` naming the line on anything else.
    """
    mutations = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] != "mutate" or len(words) % 2 != 1:
            raise ValueError(f"text: line {lineno} is not a 'mutate -option value ...' command: {line!r}")
        fields: dict[str, Any] = {}
        src = []
        for option, value in zip(words[1::2], words[2::2], strict=True):
            name = option.lstrip("-")
            if not option.startswith("-") or name not in (*_FIELDS, "src"):
                raise ValueError(f"text: line {lineno}: unknown option {option!r}")
            if name == "src":
                src.append(value)
            elif name in fields:
                raise ValueError(f"text: line {lineno}: {option} given twice")
            else:
                fields[name] = int(value) if name in ("portbit", "ctrlbit", "wirebit") else value
        missing = [name for name in ("mode", "module", "cell", "port", "portbit") if name not in fields]
        if missing:
            raise ValueError(f"text: line {lineno}: missing {', '.join('-' + m for m in missing)}")
        if fields["mode"] not in _MODES:
            raise ValueError(f"text: line {lineno}: unknown mode {fields['mode']!r}; valid: {', '.join(_MODES)}")
        if fields["mode"].startswith("cnot") and "ctrlbit" not in fields:
            raise ValueError(f"text: line {lineno}: mode {fields['mode']} needs -ctrlbit")
        mutations.append(Mutation(id=len(mutations) + 1, command=line, src=tuple(src), **fields))
    return mutations


# --- Yosys ---------------------------------------------------------------------------------------


def _yosys(script: str, cwd: Path, log: Path, *, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a Yosys script (``-q``, log to ``log``); :class:`FlowError` on a missing Yosys."""
    yosys = shutil.which("yosys")
    if yosys is None:
        raise FlowError("yosys not found: install it with `bash sim/require-tools.sh fpga` (Debian package yosys)")
    (cwd / f"{log.stem}.ys").write_text(script)
    return subprocess.run(
        [yosys, "-q", "-l", str(log), "-s", f"{log.stem}.ys"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _yosys_checked(script: str, cwd: Path, log: Path) -> None:
    proc = _yosys(script, cwd, log)
    if proc.returncode != 0:
        raise FlowError(f"yosys failed ({log}):\n{(proc.stderr or proc.stdout)[-2000:]}")


def prepare(raw: Path, top: str, out: Path, *, count: int, seed: int, options: Sequence[str] = ()) -> list[Mutation]:
    """``design.il``, ``original.v`` and ``mutations.ys`` in ``out`` from the raw Verilog; the mutation list.

    ``options`` are passed on to ``mutate -list`` (its candidate filters, e.g. ``-mode const0 -port Y``, then
    a selection, e.g. ``t:$add``).
    """
    for word in options:
        if not re.fullmatch(r"[-\w$.:/\\]+", word):
            raise ValueError(f"options: {word!r} is not a plain mutate -list option or value")
    shutil.copyfile(raw, out / f"{top}.v")
    extra = "".join(f" {word}" for word in options)
    _yosys_checked(
        f"read_verilog {top}.v\nhierarchy -top {top}\n{PREPARE}\nwrite_rtlil design.il\n"
        f"write_verilog -noattr original.v\nmutate -list {count} -seed {seed} -o mutations.ys{extra}\n",
        out,
        out / "prepare.log",
    )
    return parse_mutations((out / "mutations.ys").read_text())


def write_mutants(out: Path, mutations: Sequence[Mutation]) -> dict[int, Path]:
    """One Verilog file per mutation (``out/mutants/mNNN.v``), written by a single Yosys run."""
    folder = out / "mutants"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    paths = {m.id: folder / f"m{m.id:03d}.v" for m in mutations}
    lines = ["read_rtlil design.il", "design -save original"]
    for m in mutations:
        lines += ["design -load original", m.command, f"write_verilog -noattr {paths[m.id].relative_to(out)}"]
    _yosys_checked("\n".join(lines) + "\n", out, out / "mutants.log")
    return paths


def _miter_script(mutation: Mutation, top: str) -> list[str]:
    """Yosys commands that leave the original (``gold``) and the mutant (``gate``) as flat modules."""
    return [
        "read_rtlil design.il",
        mutation.command,
        "memory",
        "flatten",
        f"rename {top} gate",
        "design -stash gate",
        "read_rtlil design.il",
        "memory",
        "flatten",
        f"rename {top} gold",
        "design -stash gold",
        "design -copy-from gold -as gold gold",
        "design -copy-from gate -as gate gate",
    ]


_SAT_ROW = re.compile(r"^\s*(\d+)\s+\\(gold|gate)_(\S+)\s+\S+\s+\S+\s+([01xz]+)\s*$", re.MULTILINE)


def parse_sat_counterexample(log_text: str) -> tuple[int, list[str]] | None:
    """(first step, output ports) where ``gold_<port>`` and ``gate_<port>`` differ in Yosys ``sat -show-outputs``
    output, or None when the text holds no differing step."""
    steps: dict[int, dict[str, dict[str, str]]] = {}
    for step, side, port, bits in _SAT_ROW.findall(log_text):
        steps.setdefault(int(step), {}).setdefault(port, {})[side] = bits
    for step in sorted(steps):
        differ = sorted(p for p, v in steps[step].items() if len(v) == 2 and v["gold"] != v["gate"])
        if differ:
            return step, differ
    return None


def classify_survivor(
    out: Path,
    mutation: Mutation,
    top: str,
    *,
    reset: str = "rst",
    bmc_steps: int = BMC_STEPS,
    induct_steps: int = INDUCT_STEPS,
    timeout: float = FORMAL_TIMEOUT_S,
) -> dict[str, Any]:
    """Why a mutant survived, from Yosys' formal tools on the original and the mutant (``design.il`` in ``out``).

    1. Bounded check: a miter of both, reset held in the first step, all registers at their initial values,
       ``sat -seq bmc_steps``. A counterexample is an output that differs: ``verdict = "observable"``
       (the smoke suite misses a real difference: a testbench gap).
    2. Otherwise ``equiv_make``/``equiv_simple``/``equiv_induct -seq induct_steps``: when every ``$equiv``
       cell (every signal of the same name in both) is proven, ``verdict = "equivalent"`` (the designs never
       diverge once they agree, and both start from the same initial register values). An unproven cell on an
       internal signal is not taken as proof for the outputs (the induction assumes it).
    3. Otherwise ``verdict = "bounded"``: no output difference within ``bmc_steps`` cycles of reset.

    A mutation of a register's clock port is outside SAT's model (every register steps once per time step):
    ``verdict = "unclassified"``. A Yosys call over ``timeout`` seconds gives ``"undetermined"``.
    """
    work = out / "formal" / f"m{mutation.id:03d}"
    work.mkdir(parents=True, exist_ok=True)
    for name in ("design.il",):
        shutil.copyfile(out / name, work / name)
    result: dict[str, Any] = {"bmc_steps": bmc_steps, "induct_steps": induct_steps}
    if mutation.port in ("CLK", "CLK_ENABLE") and mutation.cell.startswith("$procdff"):
        return result | {
            "verdict": "unclassified",
            "reason": "mutation of a register's clock: outside the SAT model (one clock, every register steps "
            "each cycle); not classified",
        }
    started = time.perf_counter()
    bmc = [
        *_miter_script(mutation, top),
        "miter -equiv -flatten -make_outputs -ignore_gold_x gold gate miter",
        "hierarchy -top miter",
        (
            f"sat -prove trigger 0 -set-init-zero -set-at 1 in_{reset} 1 -prove-skip 1 -seq {bmc_steps} "
            f"-show-outputs -timeout {int(timeout)} miter"
        ),
    ]
    try:
        _yosys("\n".join(bmc) + "\n", work, work / "bmc.log", timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        return result | {"verdict": "undetermined", "reason": f"bounded check timed out after {timeout:.0f} s"}
    log = (work / "bmc.log").read_text(errors="replace")
    result["bmc_s"] = round(time.perf_counter() - started, 2)
    found = parse_sat_counterexample(log) if "model found: FAIL" in log else None
    if found is not None:
        step, ports = found
        return result | {
            "verdict": "observable",
            "first_step": step,
            "outputs": ports,
            "reason": f"observable difference at output {', '.join(ports)} in cycle {step - 1} after reset "
            f"(bounded check): not detected by the smoke suite (testbench gap)",
        }
    if "TIMEOUT!" in log:
        return result | {"verdict": "undetermined", "reason": f"bounded check timed out after {timeout:.0f} s"}
    if "SUCCESS" not in log:
        raise FlowError(f"bounded check of mutant {mutation.id} gave no verdict (log {work / 'bmc.log'})")

    started = time.perf_counter()
    equiv = [
        *_miter_script(mutation, top),
        "equiv_make gold gate equiv",
        "hierarchy -top equiv",
        "equiv_simple -seq 2",
        f"equiv_induct -seq {induct_steps}",
        "equiv_status",
    ]
    try:
        _yosys("\n".join(equiv) + "\n", work, work / "equiv.log", timeout=timeout)
    except subprocess.TimeoutExpired:
        return result | {
            "verdict": "bounded",
            "reason": f"no output difference within {bmc_steps - 1} cycles of reset (bounded check); "
            f"the equivalence proof timed out",
        }
    result["equiv_s"] = round(time.perf_counter() - started, 2)
    log = (work / "equiv.log").read_text(errors="replace")
    if "Equivalence successfully proven!" in log:
        return result | {
            "verdict": "equivalent",
            "reason": f"equivalent (proven by induction: yosys equiv_induct, {induct_steps} steps, every signal; "
            f"no output difference within {bmc_steps - 1} cycles of reset)",
        }
    unproven = parse_unproven(log)
    detail = f"unproven: {', '.join(unproven[:4])}" if unproven else "equivalence proof incomplete"
    return result | {
        "verdict": "bounded",
        "unproven": unproven,
        "reason": f"no output difference within {bmc_steps - 1} cycles of reset (bounded check); not proven "
        f"equivalent ({detail})",
    }


_UNPROVEN = re.compile(r"^\s*Unproven \$equiv \S+: \\?(.+?)_gold( \[\d+(?::\d+)?\])? ", re.MULTILINE)


def parse_unproven(log_text: str) -> list[str]:
    """Signals (gold-side names, with their bit) that Yosys ``equiv_status`` lists as unproven."""
    return sorted({name + (bits or "").replace(" ", "") for name, bits in _UNPROVEN.findall(log_text)})


# --- smoke runs ----------------------------------------------------------------------------------


def run_smoke(
    verilog: Path,
    *,
    top: str,
    params: Mapping[str, Any],
    tests: Sequence[str],
    seed: int,
    sim: str = "icarus",
    module: str = SMOKE_MODULE,
    factory: str | None = None,
    timeout: float | None = None,
    log: Path | None = None,
) -> dict[str, Any]:
    """The smoke suite on one Verilog file, in a child process group under a watchdog of ``timeout`` seconds.

    Returns ``status`` (``passed``, ``failed``, ``timeout`` or ``error``), ``killed_by`` (the first failing
    cocotb test, or ``timeout``), ``failed`` (every failing test), ``message`` and ``wall_s``.
    """
    verilog = Path(verilog)
    result_path = verilog.with_suffix(".smoke.json")
    result_path.unlink(missing_ok=True)
    log = verilog.with_suffix(".smoke.log") if log is None else log
    cmd = [
        sys.executable,
        "-m",
        "cimdv.tb.flows.mutants",
        "smoke",
        "--verilog",
        str(verilog),
        "--top",
        top,
        "--params",
        json.dumps(dict(params), sort_keys=True),
        "--module",
        module,
        "--tests",
        ",".join(tests),
        "--seed",
        str(seed),
        "--sim",
        sim,
        "--result",
        str(result_path),
    ]
    if factory:
        cmd += ["--factory", factory]
    started = time.perf_counter()
    with log.open("w") as log_file:
        log_file.write(shlex.join(cmd) + "\n")
        log_file.flush()
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The child leads its own process group (start_new_session): end it and the simulator under it.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            wall = time.perf_counter() - started
            return {
                "status": "timeout",
                "killed_by": "timeout",
                "failed": [],
                "message": f"no verdict after {timeout:.0f} s (watchdog)",
                "wall_s": round(wall, 2),
            }
    wall = time.perf_counter() - started
    if not result_path.exists():
        return {
            "status": "error",
            "killed_by": None,
            "failed": [],
            "message": f"smoke run exited {proc.returncode} without a result (log {log})",
            "wall_s": round(wall, 2),
        }
    result = json.loads(result_path.read_text())
    return result | {"wall_s": round(wall, 2)}


def _smoke_child(args: argparse.Namespace) -> int:
    """``smoke`` subcommand: run the suite on ``--verilog`` and write the outcome as JSON to ``--result``."""
    from cimdv.rtl import cli

    tops = dict(cli.TOPS)
    if args.factory:
        tops[args.top] = cli.LazyTop(args.factory)
    params = json.loads(args.params)
    tests = [t for t in args.tests.split(",") if t]
    outcome: dict[str, Any]
    try:
        result = simflow.run(
            args.top, params, args.sim, args.module, testcase=tests, seed=args.seed, tops=tops, verilog=args.verilog
        )
        outcome = {"status": "passed", "killed_by": None, "failed": [], "passed": list(result.passed), "message": ""}
    except AssertionError as exc:
        build = simflow.build(args.top, params, args.sim, tops=tops, verilog=args.verilog)
        failed = []
        for xml in sorted((build.build_dir / "runs").glob(f"*-s{args.seed}/results.xml")):
            failed += _failed_tests(xml)
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        outcome = {
            "status": "failed",
            "killed_by": failed[0][0] if failed else "simulation",
            "failed": [name for name, _ in failed],
            "message": failed[0][1] if failed else first_line,
        }
    except RuntimeError as exc:  # the build failed
        outcome = {"status": "error", "killed_by": None, "failed": [], "message": str(exc)[:2000]}
    Path(args.result).write_text(json.dumps(outcome, indent=1) + "\n")
    return 0


def _failed_tests(xml: Path) -> list[tuple[str, str]]:
    """(short test name, first line of the message) of every failing testcase in cocotb's results XML."""
    failed = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            message = (bad.get("message") or "").strip()
            failed.append((case.get("name") or "?", message.splitlines()[0][:300] if message else ""))
    return failed


# --- report --------------------------------------------------------------------------------------


def make_report(
    mutations: Sequence[Mutation],
    results: Mapping[int, Mapping[str, Any]],
    classes: Mapping[int, Mapping[str, Any]],
    *,
    goal: float,
    goal_on: str = "relevant",
    **extra: Any,
) -> dict[str, Any]:
    """``report.json``'s content from the mutations, their smoke results and the survivors' classification.

    A mutant is killed when its smoke run failed or hit the watchdog. ``kill_rate`` is over all mutants;
    ``kill_rate_relevant`` leaves out the survivors proven equivalent (they cannot be killed). ``goal_on``
    (``relevant`` or ``all``) says which of the two ``goal`` applies to. Raises :class:`ValueError` when
    ``results`` lacks a mutation, ``goal`` is outside 0..1 or ``goal_on`` is unknown.
    """
    if not 0.0 <= goal <= 1.0:
        raise ValueError(f"goal: {goal} is not a fraction in 0..1")
    if goal_on not in GOAL_ON:
        raise ValueError(f"goal_on: {goal_on!r}; valid: {', '.join(GOAL_ON)}")
    missing = [m.id for m in mutations if m.id not in results]
    if missing:
        raise ValueError(f"results: no smoke result for mutant(s) {missing}")
    per_mutant, survivors = [], []
    killed = errors = equivalent = 0
    for m in mutations:
        r = results[m.id]
        status = r["status"]
        if status in ("failed", "timeout"):
            outcome = "killed"
            killed += 1
        elif status == "passed":
            outcome = "survived"
        else:
            outcome = "error"
            errors += 1
        entry = {
            "id": m.id,
            "mutation": m.command,
            "location": m.location(),
            "outcome": outcome,
            "killed_by": r.get("killed_by") if outcome == "killed" else None,
            "failed_tests": len(r.get("failed", [])),
            "message": r.get("message", ""),
            "wall_s": r.get("wall_s"),
        }
        if outcome != "killed":
            cls = classes.get(m.id) or {}
            if outcome == "error":
                reason = f"flow error, not a verdict: {r.get('message', '')}"
            else:
                reason = cls.get("reason", "not classified")
            verdict = cls.get("verdict", "error" if outcome == "error" else "unclassified")
            equivalent += verdict == "equivalent"
            survivors.append(
                {
                    "id": m.id,
                    "mutation": m.command,
                    "location": m.location(),
                    "verdict": verdict,
                    "reason": reason,
                    "formal": dict(cls),
                }
            )
            entry["verdict"] = verdict
        per_mutant.append(entry)
    total = len(mutations)
    relevant = total - equivalent
    kill_rate = killed / total if total else 0.0
    kill_rate_relevant = killed / relevant if relevant else 0.0
    verdicts: dict[str, int] = {}
    for s in survivors:
        verdicts[s["verdict"]] = verdicts.get(s["verdict"], 0) + 1
    return {
        "mutants": total,
        "killed": killed,
        "survived": total - killed - errors,
        "errors": errors,
        "kill_rate": round(kill_rate, 4),
        "relevant": relevant,
        "kill_rate_relevant": round(kill_rate_relevant, 4),
        "goal": goal,
        "goal_applies_to": "kill_rate_relevant" if goal_on == "relevant" else "kill_rate",
        "goal_met": (kill_rate_relevant if goal_on == "relevant" else kill_rate) >= goal,
        "survivor_verdicts": verdicts,
        **extra,
        "survivors": survivors,
        "results": per_mutant,
    }


def _table(report: Mapping[str, Any]) -> str:
    lines = [f"  {'id':>4}  {'outcome':<9} {'s':>6}  {'module':<20} {'killed by / verdict':<34} mutation"]
    for r in report["results"]:
        how = r["killed_by"] if r["outcome"] == "killed" else r.get("verdict", "")
        mutation = r["mutation"].split(" -wire ")[0].split(" -src ")[0].removeprefix("mutate ")
        lines.append(
            f"  {r['id']:>4}  {r['outcome']:<9} {r['wall_s'] or 0:>6.1f}  {r['location']['module']:<20} "
            f"{str(how)[:34]:<34} {mutation}"
        )
    return "\n".join(lines)


# --- the flow ------------------------------------------------------------------------------------


def run_flow(
    *,
    top: str = "core",
    params: Mapping[str, Any] | None = None,
    count: int = DEFAULT_COUNT,
    seed: int = DEFAULT_SEED,
    sim_seed: int = DEFAULT_SEED,
    goal: float = DEFAULT_GOAL,
    goal_on: str = "relevant",
    sim: str = "icarus",
    module: str = SMOKE_MODULE,
    tests: Sequence[str] = SMOKE_TESTS,
    jobs: int = 2,
    timeout: float | None = None,
    bmc_steps: int = BMC_STEPS,
    induct_steps: int = INDUCT_STEPS,
    formal_timeout: float = FORMAL_TIMEOUT_S,
    factory: str | None = None,
    mutate_options: Sequence[str] = (),
    out: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole mutation check (module docstring); writes and returns ``report.json``'s content.

    Raises :class:`ValueError` on bad arguments (naming the parameter) and :class:`FlowError` when the
    flow cannot give a verdict, e.g. when the unmutated design fails the smoke suite.
    """
    from cimdv.rtl import cli

    if count < 1:
        raise ValueError(f"count: {count} mutants; at least 1")
    if jobs < 1:
        raise ValueError(f"jobs: {jobs}; at least 1")
    if not tests:
        raise ValueError("tests: the smoke suite is empty")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout: {timeout} s; must be positive")
    if not 0.0 <= goal <= 1.0:
        raise ValueError(f"goal: {goal} is not a fraction in 0..1")
    if goal_on not in GOAL_ON:
        raise ValueError(f"goal_on: {goal_on!r}; valid: {', '.join(GOAL_ON)}")
    if sim not in simflow.SIMULATORS:
        raise ValueError(f"sim: unknown simulator {sim!r}; valid: {', '.join(simflow.SIMULATORS)}")
    unknown = sorted(set(tests) - set(simflow.cocotb_test_names(module)))
    if unknown:
        raise ValueError(f"tests: not cocotb tests of {module}: {', '.join(unknown)}")
    tops = dict(cli.TOPS)
    if factory:
        tops[top] = cli.LazyTop(factory)
    params = dict(DEFAULT_GEOMETRY if params is None and top == "core" else params or {})
    out = simflow.BUILD_ROOT / "mutation" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Nothing of an earlier run may pass for this one's.
    (out / "report.json").unlink(missing_ok=True)
    shutil.rmtree(out / "formal", ignore_errors=True)
    started = time.perf_counter()

    raw, full = simflow.generate_verilog(top, params, tops=tops)
    mutations = prepare(raw, top, out, count=count, seed=seed, options=mutate_options)
    paths = write_mutants(out, mutations)
    echo(f"cimdv-mutants: {len(mutations)} mutants of {top} {json.dumps(full)} (mutate seed {seed})")

    smoke = {"top": top, "params": full, "tests": tests, "seed": sim_seed, "sim": sim, "module": module}
    sanity = run_smoke(out / "original.v", **smoke, factory=factory, timeout=max(600.0, timeout or 0))
    if sanity["status"] != "passed":
        raise FlowError(
            f"sanity run failed: the unmutated design written through Yosys does not pass the smoke suite "
            f"({sanity['status']}: {sanity.get('killed_by')}: {sanity.get('message')}); log "
            f"{(out / 'original.smoke.log')}. No mutant was run."
        )
    # The sanity run built original.v; a mutant also builds, so its budget is the sanity run's total.
    watchdog = timeout if timeout is not None else TIMEOUT_FLOOR_S + TIMEOUT_FACTOR * sanity["wall_s"]
    echo(f"cimdv-mutants: sanity run passed in {sanity['wall_s']:.1f} s; watchdog {watchdog:.0f} s per mutant")

    results: dict[int, dict[str, Any]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        # Threads only wait: each mutant runs in its own child process group (run_smoke).
        futures = {
            pool.submit(run_smoke, paths[m.id], **smoke, factory=factory, timeout=watchdog): m for m in mutations
        }
        for future in concurrent.futures.as_completed(futures):
            m = futures[future]
            results[m.id] = future.result()
            r = results[m.id]
            echo(f"  m{m.id:03d} {r['status']:<8} {r['wall_s']:6.1f} s  {r.get('killed_by') or ''}")

    classes: dict[int, dict[str, Any]] = {}
    survivors = [m for m in mutations if results[m.id]["status"] == "passed"]
    if survivors:
        echo(f"cimdv-mutants: classifying {len(survivors)} survivor(s) with yosys")
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(
                classify_survivor,
                out,
                m,
                top,
                bmc_steps=bmc_steps,
                induct_steps=induct_steps,
                timeout=formal_timeout,
            ): m
            for m in survivors
        }
        for future in concurrent.futures.as_completed(futures):
            classes[futures[future].id] = future.result()

    smoke_walls = [r["wall_s"] for r in results.values() if r["status"] != "timeout"]
    report = make_report(
        mutations,
        results,
        classes,
        goal=goal,
        goal_on=goal_on,
        seed=seed,
        mutate_options=list(mutate_options),
        top=top,
        params=full,
        simulator=sim,
        smoke_module=module,
        smoke_tests=list(tests),
        smoke_seed=sim_seed,
        watchdog_s=round(watchdog, 1),
        sanity=sanity,
        smoke_wall_s_mean=round(sum(smoke_walls) / len(smoke_walls), 2) if smoke_walls else None,
        jobs=jobs,
        wall_s=round(time.perf_counter() - started, 1),
        command=shlex.join(sys.argv),
    )
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _parse_params(items: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    from cimdv.rtl import cli

    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param expects NAME=VALUE, got {item!r}")
        params[name] = cli._parse_value(value)
    return params


def main(argv: list[str] | None = None) -> int:
    """``cimdv-mutants``: run the mutation check; exit 0 when the kill rate meets ``--goal``, 1 when not,
    2 when the flow cannot give a verdict."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["smoke"]:
        child = argparse.ArgumentParser(prog="cimdv-mutants smoke", description="(internal) one smoke run")
        for name in ("--verilog", "--top", "--params", "--module", "--tests", "--result"):
            child.add_argument(name, required=True)
        child.add_argument("--seed", type=int, required=True)
        child.add_argument("--sim", default="icarus")
        child.add_argument("--factory")
        return _smoke_child(child.parse_args(argv[1:]))

    p = argparse.ArgumentParser(
        prog="cimdv-mutants",
        description="Mutation check of the core testbench with yosys' mutate pass (build/mutation/report.json).",
    )
    p.add_argument("-n", "--count", type=int, default=DEFAULT_COUNT, help=f"mutants (default {DEFAULT_COUNT})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="mutate -seed: which mutants (default 1)")
    p.add_argument("--sim-seed", type=int, default=DEFAULT_SEED, help="cocotb seed of every smoke run (default 1)")
    p.add_argument("--goal", type=float, default=DEFAULT_GOAL, help=f"minimum kill rate (default {DEFAULT_GOAL})")
    p.add_argument(
        "--goal-on",
        choices=GOAL_ON,
        default="relevant",
        help="kill rate the goal applies to: relevant (proven-equivalent survivors left out; default) or all",
    )
    p.add_argument("--sim", choices=simflow.SIMULATORS, default="icarus", help="simulator (default icarus)")
    p.add_argument("--jobs", type=int, default=2, help="mutants simulated at a time (default 2)")
    p.add_argument("--timeout", type=float, help="watchdog per mutant in s (default: floor + factor x sanity run)")
    p.add_argument("--tests", help="comma-separated smoke tests (default: SMOKE_TESTS, docs/mutation.md)")
    p.add_argument("--top", default="core", help="top to mutate (default core)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="parameter of the top")
    p.add_argument("--bmc-steps", type=int, default=BMC_STEPS, help=f"bounded-check steps (default {BMC_STEPS})")
    p.add_argument("--out", type=Path, default=simflow.BUILD_ROOT / "mutation", help="output directory")
    args = p.parse_args(argv)
    params = _parse_params(args.param, p) if args.param else None
    tests = tuple(t.strip() for t in args.tests.split(",") if t.strip()) if args.tests else SMOKE_TESTS
    try:
        report = run_flow(
            top=args.top,
            params=params,
            count=args.count,
            seed=args.seed,
            sim_seed=args.sim_seed,
            goal=args.goal,
            goal_on=args.goal_on,
            sim=args.sim,
            tests=tests,
            jobs=args.jobs,
            timeout=args.timeout,
            bmc_steps=args.bmc_steps,
            out=args.out,
        )
    except ValueError as exc:
        p.error(str(exc))
    except FlowError as exc:
        print(f"cimdv-mutants: ERROR: {exc}", file=sys.stderr)
        return 2
    print(_table(report))
    for s in report["survivors"]:
        print(f"  survivor m{s['id']:03d} ({s['location']['src']}): {s['reason']}")
    print(
        f"cimdv-mutants: {report['killed']}/{report['mutants']} killed, kill rate {report['kill_rate']:.3f} "
        f"(relevant: {report['kill_rate_relevant']:.3f}), goal {report['goal']}, {report['wall_s']:.0f} s; "
        f"wrote {args.out / 'report.json'}"
    )
    if not report["goal_met"]:
        rate = report[report["goal_applies_to"]]
        print(f"cimdv-mutants: FAILED: {report['goal_applies_to']} {rate:.3f} < goal {report['goal']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
