"""The scoreboard: monitors' observations against the predictor's expectations.

:class:`ChipScoreboard` collects four analysis streams (host transactions, expectations, what every
tile's macro computed, NoC/health events) and in ``check_phase`` hands them to :class:`ChipChecker`,
which performs every comparison and lists every mismatch with the command, core, vector, neuron and
values. Three references, never mixed:

* **the macro** (exact, any macro model): every output the chip delivered equals what its tile's
  comparator decided (sign at the sign compare, count = the step of the first flip, saturation), and
  every reduced sum equals the sum of those;
* **the exact model** (exact macros): every output, every reduced sum and the integrators at the sign
  compare equal :class:`~cimdv.model.exact.ExactCore`; a silent macro's outputs are saturated negative;
* **the ideal model, statistically** (noisy physical macros, whose noise the predictor cannot share):
  mean and RMS of the count error per core within the tolerances of :mod:`cimdv.tb.uvm.stats`.
"""

import re

import numpy as np
from pyuvm import ConfigDB, UVMConfigItemNotFound, uvm_scoreboard, uvm_tlm_analysis_fifo

from cimdv.model.encoding import bits_to_bool, pulses_per_phase
from cimdv.rtl.host.protocol import Opcode

from .stats import MIN_SAMPLES, CountErrorCheck, integrator_sigma

__all__ = ["ChipChecker", "ChipScoreboard", "comparator_result"]


def comparator_result(compares, cfg):
    """``(sign, count, sat)`` a core must report for the comparator answers ``compares`` of one vector.

    The rule of docs/analog-boundary.md §4.1 as the controller applies it: ``sign = not cmp`` at the sign
    compare; the count of a neuron is the step of its first flip; an active neuron that never flipped in
    ``MAX_COUNT`` steps reports MAX_COUNT with ``sat``; masked-out neurons report zeros.
    """
    n_out, lines = cfg.n_out, cfg.lines
    first = bits_to_bool(compares[0], lines)[:n_out]
    active = np.asarray(cfg.mask[:n_out], dtype=bool)
    count = np.zeros(n_out, dtype=np.int64)
    flipped = np.zeros(n_out, dtype=bool)
    for k, value in enumerate(compares[1:], start=1):
        new = (bits_to_bool(value, lines)[:n_out] != first) & ~flipped
        count[new] = k
        flipped |= new
    sat = active & ~flipped if cfg.max_count else np.zeros(n_out, dtype=bool)
    count = np.where(active, np.where(sat, cfg.max_count, count), 0)
    sign = (~first & active).astype(np.uint8)
    return sign, count, sat


def _signed(sign, count):
    return np.where(np.asarray(sign).astype(bool), -np.asarray(count), np.asarray(count))


def _silent_result(cfg):
    active = np.asarray(cfg.mask[: cfg.n_out], dtype=bool)
    return active.astype(np.uint8), np.where(active, cfg.max_count, 0), active & (cfg.max_count > 0)


def _core_bit(xy, cols):
    return 1 << (xy[1] * cols + xy[0])


class ChipChecker:
    """Every comparison of one run (see the module docstring).

    Parameters
    ----------
    cores : list of (x, y)
    cols : int
        Columns of the grid (bit ``y * cols + x`` of ``busy``/``error``).
    expect_errors : bool
        The test expects core ``error`` flags (else any is a mismatch).
    max_reported : int
        Mismatches listed in full (the rest are counted).
    """

    def __init__(self, cores, cols, *, expect_errors=False, max_reported=12):
        self.cores = list(cores)
        self.cols = cols
        self.expect_errors = expect_errors
        self.max_reported = max_reported
        self.problems = []
        self.stats = {}
        self.counts = dict.fromkeys(
            (
                "commands",
                "mvm_blocks",
                "reduced_sums",
                "model_exact",
                "model_statistical",
                "csr_checked",
                "csr_unchecked",
                "late_vectors",
                "noc_events",
            ),
            0,
        )

    def fail(self, text):
        self.problems.append(text)

    # ---- the run ---------------------------------------------------------------------------
    def run(self, actual, expected, macro, noc, pending=()):
        """Compare everything; returns the list of mismatches (empty: the run is correct)."""
        queues = {xy: [] for xy in self.cores}
        for txn in macro:
            queues.setdefault(txn.xy, []).append(txn)
        for command in pending:
            self.fail(f"a command ({len(command[0])} words at {command[1]} ns) never got a response")
        if len(actual) != len(expected):
            self.fail(f"{len(actual)} commands observed but {len(expected)} predicted")
        if not actual:
            self.fail("no command was observed: nothing was checked")
        for act, exp in zip(actual, expected, strict=False):
            self.counts["commands"] += 1
            self.check_command(act, exp, queues)
        for xy, left in queues.items():
            if left:
                self.fail(
                    f"tile {xy}: {len(left)} vector(s) computed by the macro that no MVM explains "
                    f"(first at {left[0].t_start_ns} ns)"
                )
        self.check_noc(noc, actual, expected)
        self.check_statistics()
        return self.problems

    def check_command(self, act, exp, queues):
        if exp.problem:
            self.fail(f"{act.name}: outside the predictor's model: {exp.problem}")
            return
        if act.rsp_tag != act.tag:
            self.fail(f"{act.name}: response tag {act.rsp_tag}")
        if exp.status is not None and act.status != exp.status:
            self.fail(f"{act.name}: status {act.status.name}, expected {exp.status.name}")
            if exp.mvm is not None:  # keep the macro streams aligned with the next commands
                for xy in exp.mvm.cores:
                    queues[xy] = queues.get(xy, [])[exp.mvm.vectors :]
            return
        if act.opcode == Opcode.MVM:
            self.check_mvm(act, exp.mvm, queues)
        elif exp.payload is None:
            self.counts["csr_unchecked"] += 1
        elif tuple(act.payload) != tuple(exp.payload):
            got = [f"{w:#x}" for w in act.payload]
            want = [f"{w:#x}" for w in exp.payload]
            self.fail(f"{act.name} (addr {act.addr}, area {act.area}): payload {got}, expected {want}")
        else:
            self.counts["csr_checked"] += 1

    # ---- MVM ------------------------------------------------------------------------------------
    def _take(self, act, m, queues, xy, late):
        """The macro transactions of core ``xy`` for this MVM (``vectors`` of them, in order)."""
        queue = queues.get(xy, [])
        taken, queues[xy] = queue[: m.vectors], queue[m.vectors :]
        if len(taken) < m.vectors:
            self.fail(f"{act.name} core {xy}: its macro computed {len(taken)} of {m.vectors} vectors")
            return None
        for v, t in enumerate(taken):
            if t.t_start_ns < act.t_cmd_ns or (not late and t.t_end_ns > act.t_rsp_ns):
                self.fail(
                    f"{act.name} core {xy} vector {v}: the macro computed it at {t.t_start_ns}..{t.t_end_ns} ns, "
                    f"outside the command ({act.t_cmd_ns}..{act.t_rsp_ns} ns)"
                )
        return taken

    def _macro_checks(self, act, xy, v, cfg, txn, model):
        """Operation counts of one vector, and the exact macro's integrators against the model."""
        ops = 2 * sum(pulses_per_phase(cfg))
        steps = len(txn.compares) - 1
        where = f"{act.name} core {xy} vector {v}"
        if (txn.samples, txn.integrates, txn.noise_ops, txn.decrements) != (ops, ops, cfg.noise_pulses, steps):
            self.fail(
                f"{where}: macro saw {txn.samples} SAMPLE, {txn.integrates} INTEGRATE, {txn.noise_ops} NOISE, "
                f"{txn.decrements} DECREMENT for {steps} step compares; "
                f"expected {ops}, {ops}, {cfg.noise_pulses}, {steps}"
            )
        if steps > cfg.max_count or txn.backward != cfg.backward:
            self.fail(f"{where}: {steps} conversion steps (MAX_COUNT {cfg.max_count}), backward={txn.backward}")
        if txn.kind == "exact":
            got = txn.integ[: cfg.n_out]
            bad = np.flatnonzero(got != model.integ)
            if bad.size:
                self.fail(
                    f"{where}: integrator at the sign compare differs at neurons {bad[:8].tolist()}: "
                    f"macro {got[bad[:8]].tolist()}, model {model.integ[bad[:8]].tolist()}"
                )

    def _compare(self, where, got, want, ref):
        """Element-wise (sign, count, sat) comparison; one mismatch text per differing field."""
        ok = True
        for name, g, w in zip(("sign", "count", "sat"), got, want, strict=True):
            g, w = np.asarray(g).astype(np.int64), np.asarray(w).astype(np.int64)
            bad = np.flatnonzero(g != w)
            if bad.size:
                ok = False
                self.fail(
                    f"{where}: {name} differs at neurons {bad[:8].tolist()}: RTL {g[bad[:8]].tolist()}, "
                    f"{ref} {w[bad[:8]].tolist()}"
                )
        return ok

    def _reference(self, txn, cfg, model):
        """The model's ``(sign, count, sat)`` for this macro kind (None: statistical)."""
        if txn.kind == "exact":
            return model.sign, model.count, model.sat
        if txn.kind == "silent":
            return _silent_result(cfg)
        return None

    def _add_statistics(self, xy, txn, cfg, x, got, model):
        read_noise, ktc_noise, q = txn.noise
        active = np.asarray(cfg.mask[: cfg.n_out], dtype=bool)
        if not cfg.max_count or not active.any():
            return
        sigma = integrator_sigma(cfg, x, read_noise=read_noise, ktc_noise=ktc_noise)
        check = self.stats.setdefault(xy, CountErrorCheck())
        check.add(got[active], model.signed[active], model.integ[active], sigma, q, cfg.max_count)
        self.counts["model_statistical"] += 1

    def check_mvm(self, act, m, queues):
        taken = {xy: self._take(act, m, queues, xy, xy in m.late) for xy in m.cores}
        for xy in m.late:
            if taken[xy] is not None:
                for v, txn in enumerate(taken[xy]):
                    self._macro_checks(act, xy, v, m.cfg[xy], txn, m.results[xy][v])
                    self.counts["late_vectors"] += 1
        if m.reduce:
            self.check_reduced(act, m, taken)
        else:
            self.check_blocks(act, m, taken)

    def check_blocks(self, act, m, taken):
        blocks = list(act.blocks)
        if len(blocks) != len(m.cores) * m.vectors:
            self.fail(f"{act.name}: {len(blocks)} output blocks, expected {len(m.cores) * m.vectors}")
            return
        real = len(m.delivered) * m.vectors
        by_core = {}
        for b in blocks[:real]:
            by_core.setdefault((b.x, b.y), []).append(b)
        for b in blocks[real:]:
            if (b.x, b.y) != (0, 0) or b.count.any() or b.sign.any() or b.sat.any():
                self.fail(f"{act.name}: a missing core's block is not zero-filled (block of ({b.x}, {b.y}))")
        if sorted(by_core) != sorted(m.delivered) or any(len(v) != m.vectors for v in by_core.values()):
            got = {xy: len(v) for xy, v in sorted(by_core.items())}
            self.fail(f"{act.name}: blocks per core {got}, expected {m.vectors} from each of {m.delivered}")
            return
        for xy in m.delivered:
            if taken[xy] is None:
                continue
            cfg = m.cfg[xy]
            for v, (b, txn) in enumerate(zip(by_core[xy], taken[xy], strict=True)):
                model = m.results[xy][v]
                where = f"{act.name} core {xy} vector {v}"
                got = (b.sign[: cfg.n_out], b.count[: cfg.n_out], b.sat[: cfg.n_out])
                self._macro_checks(act, xy, v, cfg, txn, model)
                self._compare(where, got, comparator_result(txn.compares, cfg), "macro's comparator")
                self.counts["mvm_blocks"] += 1
                want = self._reference(txn, cfg, model)
                if want is None:
                    self._add_statistics(xy, txn, cfg, m.inputs[xy][v], _signed(got[0], got[1]), model)
                else:
                    self._compare(where, got, want, "model")
                    self.counts["model_exact"] += 1

    def check_reduced(self, act, m, taken):
        sums, sat = act.sums
        n = m.out_elems
        if sums.size != n:
            self.fail(f"{act.name}: {sums.size} reduced sums, expected {n}")
            return
        macro_sum, macro_sat = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        model_sum, model_sat = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        exact = True
        for xy in m.delivered:
            if taken[xy] is None:
                return
            cfg, txn, model = m.cfg[xy], taken[xy][0], m.results[xy][0]
            self._macro_checks(act, xy, 0, cfg, txn, model)
            sign, count, flag = comparator_result(txn.compares, cfg)
            macro_sum += _signed(sign, count)
            macro_sat |= flag
            want = self._reference(txn, cfg, model)
            if want is None:
                exact = False
            else:
                model_sum += _signed(want[0], want[1])
                model_sat |= want[2]
        self.counts["reduced_sums"] += 1
        for ref, want_sum, want_sat in (("macro's comparators", macro_sum, macro_sat), ("model", model_sum, model_sat)):
            if ref == "model" and not exact:
                continue
            bad = np.flatnonzero((sums != want_sum) | (sat != want_sat))
            if bad.size:
                self.fail(
                    f"{act.name} cores {m.delivered}: reduced sum differs at neurons {bad[:8].tolist()}: "
                    f"RTL {sums[bad[:8]].tolist()} sat {sat[bad[:8]].astype(int).tolist()}, {ref} "
                    f"{want_sum[bad[:8]].tolist()} sat {want_sat[bad[:8]].astype(int).tolist()}"
                )
        if exact:
            self.counts["model_exact"] += 1

    # ---- NoC and health ports -------------------------------------------------------------------
    def check_noc(self, events, actual, expected):
        self.counts["noc_events"] = len(events)
        last = {}
        mvms = [(a.t_cmd_ns, a.t_rsp_ns, a.area) for a in actual if a.opcode == Opcode.MVM and a.area]
        for e in sorted(events, key=lambda e: e.t_ns):
            if e.value is None:
                self.fail(f"{e.name} unresolvable (X/Z) at {e.t_ns} ns")
                continue
            last[e.name] = e.value
            if e.name in ("noc_drops", "noc_dropped") and e.value:
                self.fail(f"NoC dropped packets: {e.name} = {e.value} at {e.t_ns} ns")
            if e.name == "error" and e.value and not self.expect_errors:
                cores = [xy for xy in self.cores if e.value & _core_bit(xy, self.cols)]
                self.fail(f"core error flag raised by {cores} at {e.t_ns} ns")
            if e.name == "busy" and e.previous is not None:
                for xy in self.cores:
                    bit = _core_bit(xy, self.cols)
                    if (
                        e.value & bit
                        and not e.previous & bit
                        and not any(
                            t0 <= e.t_ns <= t1 and area[0] <= xy[0] <= area[2] and area[1] <= xy[1] <= area[3]
                            for t0, t1, area in mvms
                        )
                    ):
                        self.fail(f"core {xy} went busy at {e.t_ns} ns outside any MVM addressed to it")
        want = {"timeouts": sum(x.timeouts for x in expected), "stale": sum(x.stale for x in expected)}
        for name, value in want.items():
            if last.get(name) != value:
                self.fail(f"{name} counter {last.get(name)} at the end, expected {value}")
        if last.get("busy"):
            self.fail(f"cores still busy at the end (busy = {last['busy']:#x})")

    def check_statistics(self):
        for xy, check in sorted(self.stats.items()):
            if check.n < MIN_SAMPLES:
                self.fail(f"core {xy}: only {check.n} noisy neuron samples, a verdict needs {MIN_SAMPLES}")
                continue
            result = check.result()
            self.stats[xy] = result
            if not result.passed:
                self.fail(f"core {xy}: noisy counts against the ideal model out of tolerance: {result.describe()}")

    def report(self):
        """The mismatch report (first ``max_reported`` in full)."""
        lines = self.problems[: self.max_reported]
        if len(self.problems) > self.max_reported:
            lines.append(f"... and {len(self.problems) - self.max_reported} more")
        return f"chip scoreboard: {len(self.problems)} mismatch(es)\n  " + "\n  ".join(lines)


class ChipScoreboard(uvm_scoreboard):
    """Collects the monitors' and the predictor's streams; :class:`ChipChecker` decides in ``check_phase``.

    Exports (``analysis_export`` of each FIFO): ``actual`` (host transactions), ``expected`` (predictor),
    ``macro`` (every tile's macro monitor), ``noc`` (NoC monitor). ConfigDB: ``expect_errors`` (bool, default
    False); ``expected_failure`` (a regular expression; a negative test: the scoreboard must fail with a
    report matching it, else it raises ``RuntimeError`` — a failure for the wrong reason is no proof).
    """

    def build_phase(self):
        super().build_phase()
        self.actual = uvm_tlm_analysis_fifo("actual", self)
        self.expected = uvm_tlm_analysis_fifo("expected", self)
        self.macro = uvm_tlm_analysis_fifo("macro", self)
        self.noc = uvm_tlm_analysis_fifo("noc", self)
        self.harness = ConfigDB().get(self, "", "harness")
        self.expect_errors = self._config("expect_errors", False)
        self.expected_failure = self._config("expected_failure", None)
        self.checker = None

    def _config(self, key, default):
        try:
            return ConfigDB().get(self, "", key)
        except UVMConfigItemNotFound:
            return default

    @staticmethod
    def _drain(fifo):
        items = []
        while True:
            ok, item = fifo.try_get()
            if not ok:
                return items
            items.append(item)

    def check_phase(self):
        tb = self.harness.tb
        self.checker = checker = ChipChecker(tb.cores, tb.cols, expect_errors=self.expect_errors)
        host_monitor = self.harness.host_monitor
        checker.run(
            self._drain(self.actual),
            self._drain(self.expected),
            self._drain(self.macro),
            self._drain(self.noc),
            pending=host_monitor.pending if host_monitor is not None else (),
        )
        if not checker.problems:
            self.logger.info(f"chip scoreboard: no mismatch; {checker.counts}")
            return
        report = checker.report()
        self.logger.error(report)
        if self.expected_failure and not re.search(self.expected_failure, report):
            raise RuntimeError(f"the scoreboard failed, but not as expected (/{self.expected_failure}/):\n{report}")
        raise AssertionError(report)

    def report_phase(self):
        if self.checker is None:
            return
        for xy, result in sorted(self.checker.stats.items()):
            if hasattr(result, "describe"):
                self.logger.info(f"core {xy} noisy macro: {result.describe()}")
        if self.expected_failure and not self.checker.problems:
            self.logger.error(f"a failure matching /{self.expected_failure}/ was expected, and none happened")
