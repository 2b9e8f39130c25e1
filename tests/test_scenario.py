"""Scenario files: safe loading, typo-catching, impossible combinations, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from abm.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from tests.conftest import small_scenario

SCENARIOS = sorted(Path(__file__).resolve().parents[1].joinpath("scenarios").glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_shipped_scenario_starts_with_the_question_it_answers(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Question:")


def test_unknown_key_is_an_error_naming_file_and_path(tmp_path):
    p = _write(tmp_path, "rewards:\n  polcy: mint\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    msg = str(err.value)
    assert str(p) in msg and "rewards.polcy" in msg and "unknown" in msg


def test_bad_value_names_field_value_and_allowed_values(tmp_path):
    p = _write(tmp_path, "clients:\n  - {count: 2, behaviour: honset}\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    msg = str(err.value)
    assert "clients[0].behaviour = 'honset'" in msg
    assert "'free_rider'" in msg


def test_negative_budget_is_refused(tmp_path):
    p = _write(tmp_path, "rewards:\n  budget: {amount: -5}\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    msg = str(err.value)
    assert "rewards.budget.amount = -5: input should be greater than or equal to 0" in msg


def test_exact_shapley_with_too_many_clients_is_refused_up_front():
    with pytest.raises(ScenarioError, match=r"contribution.method = 'shapley_exact'.*16 clients"):
        parse_scenario({"clients": [{"count": 40}],
                        "contribution": {"method": "shapley_exact"}}, source="x.yaml")


def test_more_clients_than_data_is_refused():
    with pytest.raises(ScenarioError, match="training samples"):
        parse_scenario({"clients": [{"count": 100}], "fl": {"dataset": {"name": "wine"}}})


def test_python_object_tags_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    p = _write(tmp_path, f'x: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ScenarioError, match="object tags"):
        load_scenario(p)
    assert not marker.exists()


def test_duplicate_keys_are_refused(tmp_path):
    p = _write(tmp_path, "steps: 10\nsteps: 20\n")
    with pytest.raises(ScenarioError, match="duplicate key 'steps'"):
        load_scenario(p)


def test_missing_file_and_non_mapping_get_clear_messages(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "nope.yaml")
    with pytest.raises(ScenarioError, match="top level of a scenario file must be a mapping"):
        load_scenario(_write(tmp_path, "- 1\n- 2\n"))


def test_cifar10_without_a_local_copy_says_what_to_do():
    with pytest.raises(ScenarioError, match="never downloaded"):
        parse_scenario({"fl": {"dataset": {"name": "cifar10", "path": "/nonexistent"},
                               "model": "cnn"}})


def test_overrides_revalidate_and_refuse_unknown_paths():
    s = Scenario()
    t = s.with_overrides({"rewards.policy": "mint", "clients.0.count": 4,
                          "contribution.params.eps_within": 0.01})
    assert (t.rewards.policy, t.n_clients, t.contribution.params.eps_within) == ("mint", 4, 0.01)
    assert s.rewards.policy == "buyback"  # the original is unchanged (frozen)
    with pytest.raises(ScenarioError, match=r"contribution\.params\.eps = 0.01: unknown "
                       r"parameter of method 'gtg_shapley'"):
        s.with_overrides({"contribution.params.eps": 0.01})
    with pytest.raises(ScenarioError, match=r"rewards\.polcy: does not exist"):
        s.with_overrides({"rewards.polcy": "mint"})
    with pytest.raises(ScenarioError, match="allowed values"):
        s.with_overrides({"rewards.policy": "airdrop"})


def test_resolved_dict_round_trips_to_the_same_scenario():
    s = load_scenario(SCENARIOS[0])
    assert parse_scenario(s.to_dict()) == s


def test_client_ids_are_zero_padded_in_group_order():
    s = parse_scenario({"clients": [{"count": 2}, {"count": 1, "behaviour": "free_rider"}]})
    assert [(cid, g.behaviour) for cid, g in s.client_groups()] == [
        ("c00", "honest"), ("c01", "honest"), ("c02", "free_rider")]


def test_learning_device_and_utility_subset_fields_are_checked():
    s = small_scenario()
    assert s.fl.device == "auto" and s.fl.utility_samples is None
    with pytest.raises(ScenarioError, match=r"fl\.device = 'gpu'.*'auto', 'cpu' or 'cuda'"):
        small_scenario(**{"fl.device": "gpu"})
    with pytest.raises(ScenarioError, match=r"fl\.utility_samples = 5.*greater than or equal"):
        small_scenario(**{"fl.utility_samples": 5})
    assert small_scenario(**{"fl.utility_samples": 40}).fl.utility_samples == 40


def test_shown_never_builds_the_whole_text_of_a_large_value():
    from abm.errors import shown as excerpt

    shared = ["lol"] * 9
    for _ in range(8):  # 9^9 strings reached through shared references, like YAML aliases
        shared = [shared] * 9
    text = excerpt(shared, 60)
    assert len(text) == 60 and text.endswith("...") and text.startswith("[[[[")
    assert excerpt("x" * 10**6, 20) == "'xxxxxxxxxxxxxxxx..."
    assert excerpt(10**5000) == "<an integer of about 5001 digits>"
    assert excerpt({"a": 1, "b": [True, None, "x"]}) == '{"a": 1, "b": [true, null, "x"]}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &a [1, 2]\nb: [*a, *a]\n", None),  # small aliases are fine
        ("x: " + "[" * 51 + "]" * 51 + "\n", "more than 50 levels deep"),
        ("x: " + "[" * 49 + "]" * 49 + "\n", None),  # the mapping is level 1
        ("a: &a [" + ", ".join(["1"] * 1000) + "]\nb: [" + ", ".join(["*a"] * 101) + "]\n",
         "expands to more than 100,000 values"),
        ("x: " + "9" * 5000 + "\n", "a value cannot be read"),
    ],
)
def test_the_loader_bounds_nesting_and_alias_expansion(tmp_path, text, expected):
    path = _write(tmp_path, text)
    if expected is None:
        from abm.scenario import read_yaml

        assert isinstance(read_yaml(path), dict)
    else:
        with pytest.raises(ScenarioError, match=expected):
            load_scenario(path)


def test_the_loader_refuses_oversized_files_and_folders(tmp_path):
    from abm.scenario import MAX_YAML_BYTES

    big = _write(tmp_path, "description: '" + "x" * MAX_YAML_BYTES + "'\n")
    with pytest.raises(ScenarioError, match="larger than 1,024 KiB"):
        load_scenario(big)
    with pytest.raises(ScenarioError, match="is a folder, not a file"):
        load_scenario(tmp_path)


def test_the_source_file_is_kept_through_overrides_but_not_compared(tmp_path):
    p = _write(tmp_path, "seed: 3\n")
    s = load_scenario(p)
    assert s.source == str(p) and s.with_overrides({"seed": 4}).source == str(p)
    assert s == parse_scenario({"seed": 3}) and "source" not in s.to_dict()
    assert Scenario().source == "<scenario>"
