"""Property: whatever a scenario file holds, `wsf validate` either accepts it and `wsf run
--steps 20` then completes, or refuses it with exit code 2 and one paragraph: never a
traceback, never "valid" followed by a crash.

The files are the baseline scenario with a few values replaced at random (wrong types,
out-of-range and huge numbers, NaN and infinities, empty lists and mappings, strings), in the
sections, lists and fields the baseline has. The commands run in this process through
`abm.cli.main` (the entry point of `wsf`), so that torch is imported once for all examples.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from abm.cli import main
from abm.scenario import ScenarioError, parse_scenario
from tests.conftest import ROOT

BASELINE = yaml.safe_load((ROOT / "scenarios" / "baseline.yaml").read_text())
#: Free-form component parameters: checked by each component's own declaration.
COMPONENT_PARAMS = ("params", "behaviour_params")


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every section, list item and field of the baseline, as key paths."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


PATHS = [p for p in _paths(BASELINE) if not set(p) & set(COMPONENT_PARAMS)]
PARAM_OWNERS = [("contribution",), *[("clients", i) for i in range(len(BASELINE["clients"]))],
                *[("investors", i) for i in range(len(BASELINE["investors"]))]]

numbers = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e-30, 1e-19, 1e300, float("nan"), float("inf")]),
)
values = st.one_of(
    numbers,
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.sampled_from(["", "30", "1e9", "honest", "mint", "x" * 300]),
    st.just([]),
    st.just({}),
    st.lists(numbers, max_size=3),
)


#: Names the schema knows, so that string fields are often set to another valid choice.
NAMES = ["honest", "free_rider", "noisy_labels", "label_flip", "small_data", "data_size",
         "leave_one_out", "shapley_mc", "gtg_shapley", "cosine", "equal", "direct", "mint",
         "buyback", "dividend", "fundamental", "momentum", "mean_reversion", "noise",
         "manipulator", "iid", "dirichlet", "quantity_skew", "logreg", "mlp", "wine",
         "synthetic", "constant", "schedule", "accuracy_gain", "sell_fraction", "usd_target",
         "hold", "stop_loss", "horizon", "client", "federation", "shift", "withhold"]


def _get(path: tuple) -> Any:
    node: Any = BASELINE
    for key in path:
        node = node[key]
    return node


def _accepted_names(path: tuple) -> list[str]:
    """The names in NAMES that the schema accepts at `path` (so a mutation can switch a
    policy, method or strategy to another valid one)."""
    ok = []
    for name in NAMES:
        data = copy.deepcopy(BASELINE)
        _set(data, path, name)
        try:
            parse_scenario(data)
        except ScenarioError:
            continue
        ok.append(name)
    return ok or NAMES


LEAVES = [p for p in PATHS if not isinstance(_get(p), dict | list)]


def _near(path: tuple) -> st.SearchStrategy:
    """Values close to a valid one: these mostly pass the schema and exercise the run."""
    original = _get(path)
    if isinstance(original, bool):
        return st.booleans()
    if isinstance(original, int):
        return st.integers(min_value=0, max_value=max(2 * original, 10))
    if isinstance(original, float):
        return st.one_of(
            st.floats(min_value=0.0, max_value=max(10 * original, 1.0)),
            st.sampled_from([original * k for k in (1e-12, 1e-6, 1e-3, 0.5, 2.0, 1e3, 1e6)]),
        )
    if isinstance(original, str):
        return st.sampled_from(_accepted_names(path))
    return values


@st.composite
def mutation(draw) -> tuple[tuple, Any]:
    """A path and a new value: mostly a field near a valid value (to reach the run), else
    any section, item or field set to anything hostile."""
    if draw(st.integers(min_value=0, max_value=9)) < 4:
        return draw(st.sampled_from(PATHS)), draw(values)
    path = draw(st.sampled_from(LEAVES))
    return path, draw(_near(path))


def _set(data: dict, path: tuple, value: Any) -> None:
    """Set `path` to `value`; skipped when an earlier mutation replaced a section on it."""
    node: Any = data
    try:
        for key in path[:-1]:
            node = node[key]
    except (KeyError, IndexError, TypeError):
        return
    last = path[-1]
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(last, int)
                                  and last < len(node)):
        node[last] = value


def _check(data: dict, capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutated.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        code = main(["validate", str(path)])
        err = capsys.readouterr().err
        assert code in (0, 2), err
        assert "Traceback" not in err and "internal error" not in err, err
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err
            return
        code = main(["run", str(path), "--steps", "20", "--no-report",
                     "--out", str(Path(tmp) / "run")])
        err = capsys.readouterr().err
        assert "Traceback" not in err and "internal error" not in err, err
        if code == 2:
            # Only the command line's own override may be refused (a round_every above 20).
            assert "(command line)" in err, f"valid, then refused by run: {err}"
        else:
            assert code == 0, err
            assert (Path(tmp) / "run" / "summary.json").is_file()


SETTINGS = settings(max_examples=16, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.mark.slow
@SETTINGS
@given(mutations=st.lists(mutation(), min_size=1, max_size=2))
@example(mutations=[(("rewards", "budget", "amount"), float("inf"))])
@example(mutations=[(("market", "opening_price"), 1e-250)])
@example(mutations=[(("clients",), [])])
@example(mutations=[(("steps",), "30")])
def test_validate_accepts_and_run_completes_or_both_refuse(mutations, capsys):
    data = copy.deepcopy(BASELINE)
    for path, value in mutations:
        _set(data, path, value)
    _check(data, capsys)


@pytest.mark.slow
@SETTINGS
@given(owner=st.sampled_from(PARAM_OWNERS),
       params=st.dictionaries(st.sampled_from(["eps", "eps_betwen", "mode", "fraction",
                                               "n_samples", "truncation", "lookback"]),
                              values, max_size=2))
@example(owner=("contribution",), params={"eps_betwen": 0.1})
@example(owner=("clients", 0), params={"mode": "sideways"})
def test_mutated_component_parameters_are_refused_by_validate_or_run(owner, params, capsys):
    data = copy.deepcopy(BASELINE)
    node = data
    for key in owner:
        node = node[key]
    node["behaviour_params" if owner[0] == "clients" else "params"] = params
    _check(data, capsys)
