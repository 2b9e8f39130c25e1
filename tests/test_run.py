"""Run folders: complete, byte-identical for the same seed, never overwritten, never partial."""

from __future__ import annotations

import json

import pytest
import yaml

from abm.run import simulate
from abm.run_folder import OutputExistsError, write_run
from tests.conftest import small_scenario

FILES = ("config.yaml", "model.parquet", "agents.parquet", "rounds.parquet", "events.parquet",
         "tokens.parquet", "wealth.parquet", "summary.json")


@pytest.fixture(scope="module")
def result():
    return simulate(small_scenario(steps=20))


def test_run_folder_holds_resolved_config_tables_summary(result, tmp_path):
    out = write_run(result, tmp_path / "run")
    for name in FILES:
        assert (out / name).is_file(), name
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["seed"] == 1 and config["steps"] == 20
    assert config["fl"]["dataset"]["name"] == "digits"  # defaults are filled in
    assert {"python", "mesa", "torch", "numpy"} <= set(config["versions"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and set(summary["clients"]) == {"c00", "c01", "c02", "c03"}
    assert set(summary["time_by_phase_s"]) >= {"fl", "contribution", "market", "collect"}


def test_same_seed_and_config_give_byte_identical_tables(result, tmp_path):
    again = simulate(small_scenario(steps=20))
    a = write_run(result, tmp_path / "a")
    b = write_run(again, tmp_path / "b")
    for name in ("model.parquet", "agents.parquet", "rounds.parquet", "events.parquet",
                 "tokens.parquet", "wealth.parquet", "config.yaml"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_events_table_marks_every_fl_round(result, tmp_path):
    import pandas as pd

    events = pd.read_parquet(write_run(result, tmp_path / "run") / "events.parquet")
    assert list(events.columns) == ["step", "kind", "client", "agent_id", "text"]
    rounds = events[events["kind"] == "round"]
    # 20 steps, a round every 10 steps: rounds in steps 10 and 20 (Mesa counts from 1),
    # the same steps the rounds table records
    assert rounds["step"].tolist() == [10, 20] == sorted(set(result.rounds["step"]))
    assert rounds["text"].str.startswith("FL round ").all()


def test_existing_folder_is_refused_and_left_untouched(result, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="never overwrite"):
        write_run(result, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_failure_while_writing_leaves_no_folder_behind(result, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(result.rounds), "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        write_run(result, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_of_writers_racing_for_one_new_folder_one_wins_the_others_are_told_it_exists(
        result, tmp_path):
    """Eight threads write the same new run folder at once (the check before the rename
    passes for all of them): one folder, one winner, every other an OutputExistsError, no
    temporary folder left."""
    import threading

    out = tmp_path / "run"
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def write() -> None:
        barrier.wait(10)
        try:
            outcomes.append(write_run(result, out))
        except BaseException as exc:  # recorded for the assertion
            outcomes.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [o for o in outcomes if o == out] == [out]
    assert all(isinstance(o, OutputExistsError) for o in outcomes if o != out), outcomes
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)


def test_a_writer_that_loses_the_rename_gets_the_exists_message(result, tmp_path,
                                                                 monkeypatch):
    """The window between the last check and rename(2): another writer publishes the folder
    while this one writes its tables. Its folder is kept; this one's is removed."""
    import abm.run_folder

    out = tmp_path / "run"
    real = abm.run_folder._write_tables

    def racing(res, folder):
        real(res, folder)
        if folder.parent == tmp_path and not out.exists():
            out.mkdir()
            (out / "summary.json").write_text("{}")  # the other writer won

    monkeypatch.setattr(abm.run_folder, "_write_tables", racing)
    with pytest.raises(OutputExistsError, match="already exists"):
        write_run(result, out)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert [p.name for p in out.iterdir()] == ["summary.json"]


def test_a_name_that_just_fits_gets_a_temporary_folder_that_fits(result, tmp_path):
    out = write_run(result, tmp_path / ("r" * 250))
    assert out.is_dir() and [p.name for p in tmp_path.iterdir()] == ["r" * 250]


def test_under_direct_payout_a_holding_clients_cash_change_is_its_reward(tmp_path):
    from analysis.metrics import client_rewards
    from analysis.runs import load_run

    scenario = small_scenario(**{"rewards.policy": "direct", "clients.0.cash_out.kind": "hold"})
    out = write_run(simulate(scenario), tmp_path / "run")
    table = client_rewards(load_run(out)).set_index("client")
    # Clients never buy, and these hold: their USD changes only by the rewards paid to them.
    for cid in ("c00", "c01", "c02", "c03"):
        assert table.loc[cid, "cash_change_usd"] == pytest.approx(table.loc[cid, "allotted_usd"])
        assert table.loc[cid, "cash_paid_usd"] == table.loc[cid, "allotted_usd"]
    total = table["cash_change_usd"] + table["holdings_change_usd"]
    assert list(total) == pytest.approx(list(table["mtm_change_usd"]))


def test_tokens_table_has_one_row_per_token_per_step_with_the_pools_state(result, tmp_path):
    import pandas as pd

    out = write_run(result, tmp_path / "run")
    tokens = pd.read_parquet(out / "tokens.parquet")
    model = pd.read_parquet(out / "model.parquet")
    clients = ["c00", "c01", "c02", "c03"]
    assert list(tokens.columns) == ["step", "client", "price", "supply", "reserve_token",
                                    "reserve_usd", "volume_usd", "fees_usd"]
    assert len(tokens) == 21 * 4  # steps 0..20 x 4 tokens
    assert tokens["step"].tolist() == [s for s in range(21) for _ in clients]
    assert list(tokens["client"].cat.categories) == clients
    assert tokens["client"].tolist() == clients * 21
    for column in ("price", "supply", "reserve_token", "reserve_usd", "volume_usd", "fees_usd"):
        wide = tokens.pivot(index="step", columns="client", values=column)
        for c in clients:
            assert wide[c].tolist() == model[f"{column}/{c}"].tolist(), (column, c)
    # Each step's fees over the tokens are the model's fees that step (the wide total).
    fees = tokens.groupby("step", observed=True)["fees_usd"].sum()
    assert fees.to_numpy() == pytest.approx(model["fees_usd"].to_numpy(), abs=1e-9)
    assert (tokens["fees_usd"] > 0).any() and (tokens["volume_usd"] > 0).any()
    # Holders' wealth: one row per holder type per step, the model's wide columns.
    wealth = pd.read_parquet(out / "wealth.parquet")
    assert list(wealth["agent_type"].cat.categories) == ["client", "investor", "lp",
                                                         "federation"]
    assert len(wealth) == 21 * 4
    at_end = wealth[wealth["step"] == 20].set_index("agent_type")
    for kind in ("client", "investor", "lp", "federation"):
        assert at_end.loc[kind, "wealth"] == model[f"wealth/{kind}"].iloc[-1]
        assert at_end.loc[kind, "wealth_if_sold"] == model[f"wealth_if_sold/{kind}"].iloc[-1]
    # The other tables' text columns are categoricals too.
    rounds = pd.read_parquet(out / "rounds.parquet")
    events = pd.read_parquet(out / "events.parquet")
    assert list(rounds["client"].cat.categories) == clients
    assert isinstance(rounds["policy"].dtype, pd.CategoricalDtype)
    assert isinstance(events["kind"].dtype, pd.CategoricalDtype)
    assert (events["kind"] == "round").sum() == 2
