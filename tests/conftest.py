"""Project-wide pytest options and fixtures.

``--sim icarus|verilator|both`` picks the simulators a DV test is parametrised over: a test that takes the
``sim`` fixture gets ids ``[icarus]`` / ``[verilator]``, which the regression summary counts by simulator.
``--seed N`` fixes the cocotb seed of every test; without it each test draws its own, prints it and records
it in the JUnit XML (property ``seed``), and a failing run prints the ``make test-one ... SEED=N`` line.
"""

import secrets

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from cimdv.tb.sim import BUILD_ROOT, SIMULATORS

# Every output under build/: Hypothesis keeps its example database and caches there, not in ./.hypothesis.
set_hypothesis_home_dir(BUILD_ROOT / "hypothesis")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cimdv")
    group.addoption(
        "--sim", choices=[*SIMULATORS, "both"], default="both", help="simulator(s) for DV tests (default: both)"
    )
    group.addoption(
        "--seed",
        type=int,
        default=None,
        help="cocotb random seed for every test (default: a random seed per test, printed)",
    )


def selected_simulators(config: pytest.Config) -> list[str]:
    choice = config.getoption("--sim")
    return list(SIMULATORS) if choice == "both" else [choice]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim" in metafunc.fixturenames:
        metafunc.parametrize("sim", selected_simulators(metafunc.config))


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("--seed")
    seed_text = "random per test" if seed is None else seed
    return f"cimdv: simulators {', '.join(selected_simulators(config))}; seed {seed_text}"


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The cocotb seed of this test: ``--seed`` if given, else fresh; printed and recorded in the JUnit XML."""
    value = request.config.getoption("--seed")
    if value is None:
        value = secrets.randbelow(2**31)
    print(f"seed={value}")
    request.node.user_properties.append(("seed", value))
    return value
