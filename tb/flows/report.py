"""The regression's HTML report, ``build/regression/index.html``, in the manner of OpenTitan's.

One static page: the header (commit, branch, simulators, seeds, wall time), the gates, the coverage
table (functional before and after closure, Verilator line, toggle and FSM, with a link to the lcov
pages), the closure run (guided against unguided transactions), the testplan by stage (a pass-rate bar
per stage; one row per testpoint with its pass rate, and one row per test with its pass count and
longest run), the functional covergroups with their holes, and the failures bucketed by their
normalised message, each with its seed and the command that reproduces it.

:func:`plan_rows` is the data behind the testplan table (also used by tests); :func:`write_report`
renders it with Jinja2 (autoescaped).
"""

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2

from cimdv.tb.sim import cocotb_test_names
from cimdv.tb.testplan import STAGES, Testplan, load_testplan

__all__ = ["plan_rows", "write_report"]


def _cases(junit: Path) -> dict[tuple[str, str], dict]:
    cases = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        outcome = "failed" if failed else "skipped" if skipped else "passed"
        cases[case.get("classname", ""), case.get("name", "")] = {
            "outcome": outcome,
            "time": float(case.get("time", 0) or 0),
        }
    return cases


def _rate(passed: int, total: int) -> float | None:
    return None if total == 0 else 100.0 * passed / total


def plan_rows(plan: Testplan, junit: Path) -> dict:
    """Testplan rows annotated with results: ``{"stages": [...], "unplanned": [...]}``.

    Each stage has ``name``, ``passed``, ``total``, ``rate`` and ``points``; each point has the testpoint's
    fields plus ``passed``/``total``/``rate`` and ``tests`` (``ref``, ``passed``, ``total``, ``max_s``).
    ``unplanned`` lists JUnit cases no plan reference stands for.
    """
    cases = _cases(junit)
    harness = plan.harness_of({module: cocotb_test_names(module) for module in plan.modules})
    claimed: set[tuple[str, str]] = set()
    stages = []
    for stage in STAGES:
        points = []
        for point in (p for p in plan.testpoints if p.stage == stage):
            tests = []
            for ref in point.tests:
                matched = plan.cases_of(ref, cases, harness)
                claimed.update(matched)
                ran = [cases[c] for c in matched if cases[c]["outcome"] != "skipped"]
                passed = sum(c["outcome"] == "passed" for c in ran)
                tests.append(
                    {
                        "ref": ref,
                        "passed": passed,
                        "total": len(ran),
                        "rate": _rate(passed, len(ran)),
                        "max_s": max((c["time"] for c in ran), default=0.0),
                    }
                )
            passed = sum(t["passed"] for t in tests)
            total = sum(t["total"] for t in tests)
            points.append(
                {
                    "name": point.name,
                    "block": point.block,
                    "desc": point.desc,
                    "covergroups": point.covergroups,
                    "tests": tests,
                    "passed": passed,
                    "total": total,
                    "rate": _rate(passed, total),
                }
            )
        passed = sum(p["passed"] for p in points)
        total = sum(p["total"] for p in points)
        stages.append({"name": stage, "points": points, "passed": passed, "total": total, "rate": _rate(passed, total)})
    unplanned = sorted(f"{cls}::{name}" for cls, name in cases if (cls, name) not in claimed)
    return {"stages": stages, "unplanned": unplanned}


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cimdv regression {{ s.git[:10] }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; font-size: 0.92em; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { background: #d9f2d9; } .fail { background: #f8d0d0; } .none { background: #eee; color: #777; }
.bar { display: inline-block; height: 0.8em; background: #4a4; } .barbg { display: inline-block; width: 12em;
  height: 0.8em; background: #e6a0a0; vertical-align: middle; }
tr.test td:first-child { padding-left: 2em; color: #444; }
code { font-size: 0.9em; } details { margin: 0.3em 0; } summary { cursor: pointer; font-weight: 600; }
</style></head><body>
<h1>cimdv regression</h1>
<p>commit <code>{{ s.git }}</code> on <code>{{ s.branch }}</code>, finished {{ s.finished }} &middot;
simulators {{ s.sim }} &middot; seed {{ "random per test (recorded)" if s.seed is none else s.seed }} &middot;
{{ s.shards }} shard(s), wall {{ "%.1f"|format(s.wall_s) }} s (coverage merge and closure
{{ "%.1f"|format(s.coverage_wall_s) }} s) &middot;
{{ "full regression" if s.full_regression else "partial regression: gates not enforced" }} &middot;
<a href="summary.json">summary.json</a> &middot; <a href="junit.xml">junit.xml</a></p>

<h2>Gates</h2>
<table><tr><th>gate</th><th>rule</th><th>value</th><th>result</th></tr>
{% for name, g in s.gates.items() %}
<tr><td>{{ name }}</td><td>{{ g.rule }}</td><td class="num">{{ "not measured" if g.value is none else g.value }}</td>
<td class="{{ 'pass' if g.passed else 'fail' }}">{{ "pass" if g.passed else "FAIL" }}{{ "" if g.enforced else
" (not enforced)" }}</td></tr>
{% endfor %}</table>

<h2>Tests</h2>
<table><tr><th></th><th>passed</th><th>failed</th><th>skipped</th></tr>
<tr><td>all</td><td class="num">{{ s.passed }}</td><td class="num">{{ s.failed }}</td>
<td class="num">{{ s.skipped }}</td></tr>
{% for sim, c in s.by_simulator.items() %}
<tr><td>{{ sim }}</td><td class="num">{{ c.passed }}</td><td class="num">{{ c.failed }}</td>
<td class="num">{{ c.skipped }}</td></tr>
{% endfor %}</table>

<h2>Coverage</h2>
<table><tr><th>metric</th><th>value</th><th>detail</th></tr>
<tr><td>functional (after closure)</td><td class="num">{{ pct(s.functional_coverage_pct) }}</td>
<td>{% if s.functional %}{{ s.functional.hit }} of {{ s.functional.bins }} planned bins hit, {{ s.functional.waived }}
waived{% if s.functional.before_closure_pct is defined %}; {{ pct(s.functional.before_closure_pct) }} before
closure{% endif %}{% endif %}</td></tr>
{% for key, label in [("line", "line"), ("toggle", "toggle"), ("fsm", "FSM states")] %}
<tr><td>{{ label }} (Verilator)</td><td class="num">{{ pct(s[key + "_coverage_pct"]) }}</td>
<td>{% if s.code %}{{ s.code[key].hit }} of {{ s.code[key].total }} points,
{{ s.code[key].waived }} waived{% endif %}</td>
</tr>
{% endfor %}</table>
{% if code_html %}<p>Line and toggle detail: <a href="{{ code_html }}">lcov report</a>.</p>{% endif %}
{% if s.code and s.code.fsm_holes %}<p>Unvisited FSM states: {% for h in s.code.fsm_holes %}<code>{{ h.unit }}
{{ h.state }}</code> (in {{ h.modules|join(", ") }}){{ "; " if not loop.last else "" }}{% endfor %}</p>{% endif %}

{% if s.closure %}<h2>Coverage closure</h2>
<table><tr><th>closure goal (the core's MVM covergroups), before</th>
<td class="num">{{ pct(s.closure.before_pct) }}</td></tr>
<tr><th>closure goal, after</th><td class="num">{{ pct(s.closure.after_pct) }}</td></tr>
<tr><th>goal</th><td class="num">{{ pct(s.closure.goal_pct) }}</td></tr>
<tr><th>transactions to the goal, guided by the holes</th><td class="num">{{ s.closure.guided_transactions }}</td></tr>
<tr><th>transactions to the goal, unguided random (same seed)</th><td class="num">{{ s.closure.unguided_transactions
}}{{ "" if s.closure.unguided_reached_goal else " (budget spent, goal not reached)" }}</td></tr>
<tr><th>seed</th><td class="num">{{ s.closure.seed }}</td></tr>
<tr><th>wall</th><td class="num">{{ "%.1f"|format(s.closure.wall_s) }} s</td></tr></table>{% endif %}

<h2>Testplan</h2>
{% for st in plan.stages %}
<p><b>{{ st.name }}</b> <span class="barbg"><span class="bar" style="width: {{ st.rate or 0 }}%"></span></span>
{{ st.passed }}/{{ st.total }} {{ pct(st.rate) }}</p>
{% endfor %}
{% for st in plan.stages %}
<details{{ " open" if st.rate is not none and st.rate < 100 else "" }}><summary>{{ st.name }}: {{ st.points|length }}
testpoints</summary>
<table><tr><th>testpoint / test</th><th>block</th><th>description</th><th>covergroups</th><th>passed</th><th>total</th>
<th>rate</th><th>max run (s)</th></tr>
{% for p in st.points %}
<tr><td><b>{{ p.name }}</b></td><td>{{ p.block }}</td><td>{{ p.desc }}</td><td>{{ p.covergroups|join(", ") }}</td>
<td class="num">{{ p.passed }}</td><td class="num">{{ p.total }}</td>
<td class="num {{ cls(p.rate) }}">{{ pct(p.rate) }}</td><td></td></tr>
{% for t in p.tests %}
<tr class="test"><td><code>{{ t.ref }}</code></td><td></td><td></td><td></td><td class="num">{{ t.passed }}</td>
<td class="num">{{ t.total }}</td><td class="num {{ cls(t.rate) }}">{{ pct(t.rate) }}</td>
<td class="num">{{ "%.1f"|format(t.max_s) }}</td></tr>
{% endfor %}{% endfor %}</table></details>
{% endfor %}
{% if plan.unplanned %}<p>{{ plan.unplanned|length }} test case(s) not claimed by any testpoint:
{% for u in plan.unplanned[:20] %}<code>{{ u }}</code> {% endfor %}</p>{% endif %}

{% if s.functional %}<h2>Functional covergroups</h2>
<table><tr><th>covergroup</th><th>bins</th><th>hit</th><th>coverage</th><th>holes</th></tr>
{% for name, g in s.functional.groups.items() %}
<tr><td>{{ name }}</td><td class="num">{{ g.bins }}</td><td class="num">{{ g.hit }}</td>
<td class="num {{ cls(g.pct) }}">{{ pct(g.pct) }}</td><td>{% for h in g.holes[:12] %}<code>{{ h }}</code>
{% endfor %}{{ "&hellip;"|safe if g.holes|length > 12 else "" }}</td></tr>
{% endfor %}</table>{% endif %}

<h2>Failures</h2>
{% if not s.failure_buckets %}<p>None.</p>{% endif %}
{% for b in s.failure_buckets %}
<details open><summary>{{ b.count }} &times; <code>{{ b.signature }}</code></summary>
<table><tr><th>test</th><th>simulator</th><th>seed</th><th>message</th><th>reproduce</th></tr>
{% for f in b.failures %}
<tr><td><code>{{ f.test }}</code></td><td>{{ f.simulator or "" }}</td><td class="num">{{ f.seed }}</td>
<td>{{ f.message }}</td><td><code>{{ f.reproduce }}</code></td></tr>
{% endfor %}</table></details>
{% endfor %}
</body></html>
"""


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def _cls(rate: float | None) -> str:
    return "none" if rate is None else "pass" if rate >= 100 - 1e-9 else "fail"


def write_report(summary: dict, out: Path, plan: Testplan | None = None) -> Path:
    """Render the regression summary (as written to ``summary.json``) to ``out``; returns ``out``."""
    plan = load_testplan() if plan is None else plan
    junit = Path(summary["junit"])
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(_TEMPLATE)
    code_html = None
    if summary.get("code") and summary["code"].get("html"):
        code_html = os.path.relpath(Path(summary["code"]["html"]), out.parent)
    text = template.render(s=summary, plan=plan_rows(plan, junit), pct=_pct, cls=_cls, code_html=code_html)
    out.write_text(text)
    return out
