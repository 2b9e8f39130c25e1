"""Investors' watchlists (`investors[i].watchlist`, docs/model.md, section 7.9): each investor
of a group follows its own uniformly drawn subset of `watchlist` tokens, from its own stream
`agent:<account>/watchlist`, buys its genesis inventory and trades only in them; null (the
default) follows every token and draws nothing, so that a scenario without the field runs as
before it existed."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest
import yaml

import abm.agents.investor as investor_module
from abm.agents.investor import Investor
from abm.agents.strategies import _WatchCrowd
from abm.amm import ONE, InvariantViolation, to_units
from abm.errors import ScenarioError
from abm.model import WallStreetFedsModel
from abm.run import simulate
from abm.scenario import Scenario
from abm.streams import stream
from tests.conftest import ROOT, small_scenario
from tests.test_fast_paths import _same_tables

#: The small scenario's groups that follow a watchlist (all but the manipulator).
FOLLOWING = (0, 1, 2, 3)


def _watching(w: int | None, scenario: Scenario | None = None, **more) -> Scenario:
    """The small scenario (4 clients) with every following group's `watchlist` set to `w`
    and `more` set on those groups too."""
    scenario = scenario or small_scenario(steps=30)
    groups = scenario.to_dict()["investors"]
    for i in FOLLOWING:
        groups[i].update(watchlist=w, **more)
    return scenario.with_overrides({"investors": groups})


def test_the_watchlists_are_reproducible_by_seed_and_each_investors_own():
    one, again = (WallStreetFedsModel(_watching(2)) for _ in range(2))
    other = WallStreetFedsModel(_watching(2).with_overrides({"seed": 2}))
    lists = [[inv.watch for inv in m.investors] for m in (one, again, other)]
    assert lists[0] == lists[1]
    assert lists[0] != lists[2]
    for inv in one.investors:
        if inv.strategy == "manipulator":
            assert inv.watch is None  # it follows none (its group cannot set one)
            continue
        assert len(inv.watch) == 2 and inv.watch == sorted(set(inv.watch))
        assert inv.rule.watch == inv.watch
        # Its own stream, drawn once: the same subset, as numpy draws it.
        rng = stream(1, f"agent:{inv.account}/watchlist")
        assert inv.watch == sorted(rng.choice(4, size=2, replace=False).tolist())
    # Not all the same subset: each investor draws its own.
    assert len({tuple(inv.watch) for inv in one.investors if inv.watch}) > 1


def test_the_watchlist_is_a_uniform_subset():
    # 4 groups of 60 investors, 2 of 4 tokens each: each token is followed 120 times in
    # expectation (sd about 7.7); every pair of tokens comes up.
    groups = [{"strategy": s, "count": 60, "cash": 500, "watchlist": 2}
              for s in ("fundamental", "momentum", "mean_reversion", "noise")]
    model = WallStreetFedsModel(small_scenario().with_overrides({"investors": groups}))
    counts = Counter(j for inv in model.investors for j in inv.watch)
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(abs(c - 120) < 40 for c in counts.values()), counts
    assert len({tuple(inv.watch) for inv in model.investors}) == 6


def test_the_watchlist_draw_shifts_no_other_draw(monkeypatch):
    # Its own stream: the order-size factors and the fundamental investors' own values
    # (the traits stream) are those of the run without watchlists.
    spread = {"size_dispersion": 0.5}
    plain = WallStreetFedsModel(_watching(None, **spread))
    watched = WallStreetFedsModel(_watching(3, **spread))
    for a, b in zip(plain.investors, watched.investors, strict=True):
        assert a.size_scale == b.size_scale
        assert getattr(a.rule, "horizon", None) == getattr(b.rule, "horizon", None)
    # And null draws no watchlist at all.
    names: list[str] = []
    real = investor_module.stream
    monkeypatch.setattr(investor_module, "stream",
                        lambda seed, name: names.append(name) or real(seed, name))
    WallStreetFedsModel(small_scenario(steps=30))
    assert names and not any(n.endswith("/watchlist") for n in names)


def test_genesis_inventory_is_the_same_share_of_cash_spread_over_the_watched_tokens():
    model = WallStreetFedsModel(_watching(2))
    books = model.token_books
    for inv in model.investors:
        tokens = {j for j, book in enumerate(books) if book.get(inv.account, 0)}
        per_token = to_units(inv.start_cash * inv.inventory) // len(inv.watch or books)
        assert tokens == set(inv.watch or range(len(books)))
        # Bought at the opening price (no swap): the USD paid is its inventory share.
        usd_paid = to_units(inv.start_cash) - model.ledger.balance(inv.account, "USD")
        assert usd_paid == per_token * len(tokens)
    model.ledger.check()


def test_each_investor_holds_and_trades_only_its_watched_tokens(monkeypatch):
    traded: list[tuple[Investor, int]] = []
    real = Investor._trade

    def recording(self, j, asset_in, amount):
        traded.append((self, j))
        return real(self, j, asset_in, amount)

    monkeypatch.setattr(Investor, "_trade", recording)
    # check=True: after every step the ledger, the accounting identity, and each investor's
    # holdings against the ledger, all of them among its watched tokens (`check_holdings`).
    model = WallStreetFedsModel(_watching(1), check=True)
    for _ in range(30):
        model.step()
    watchers = [inv for inv in model.investors if inv.watch is not None]
    assert len(watchers) == 12
    assert len({inv for inv, _ in traded if inv.watch is not None}) >= 8  # they do trade
    for inv, j in traded:
        if inv.watch is not None:
            assert j in inv.watch, (inv.account, j, inv.watch)
    for inv in watchers:
        assert set(inv.held) <= set(inv.watch)
        held = {j for j, book in enumerate(model.token_books) if book.get(inv.account, 0)}
        assert held <= set(inv.watch)


def test_a_token_outside_the_watchlist_is_caught():
    model = WallStreetFedsModel(_watching(1), check=True)
    model.step()
    inv = model.investors[0]
    other = next(j for j in range(4) if j not in inv.watch)
    model.ledger.mint(inv.account, model.client_ids[other], ONE)
    inv.held[other] = ONE
    with pytest.raises(InvariantViolation, match="outside its watchlist"):
        inv.check_holdings()


def test_null_is_todays_run_and_every_token_watched_is_the_same_run():
    # Null draws nothing and takes the paths of before watchlists (docs: the shipped
    # scenarios' tables are byte for byte those of before). A watchlist of every token
    # takes the watchlist paths (the pairs of the fundamental groups, each chartist's own
    # choice, the watched wealth) and must give the same run to the last bit.
    base = small_scenario(steps=30)
    explicit = _watching(None, base)
    assert explicit == base
    plain = simulate(base, counterfactual=False)
    every = simulate(_watching(4, base), counterfactual=False)
    for table in ("model", "agents", "rounds", "events"):
        pd.testing.assert_frame_equal(getattr(plain, table), getattr(every, table),
                                      check_exact=True)


def test_a_smaller_watchlist_changes_the_run():
    plain = simulate(small_scenario(steps=30), counterfactual=False)
    watched = simulate(_watching(1), counterfactual=False)
    assert not plain.model["volume_usd"].equals(watched.model["volume_usd"])


def test_the_fast_paths_give_the_reference_tables_with_mixed_groups(monkeypatch):
    # One chartist group with a watchlist and one without, with the same parameters: they
    # share one chart (`_Chart`), each investor choosing its own way.
    scenario = small_scenario(steps=30)
    groups = scenario.to_dict()["investors"]
    groups += [{**groups[1], "watchlist": None}, {**groups[2], "watchlist": None}]
    groups[1]["watchlist"] = groups[2]["watchlist"] = 1
    groups[0]["watchlist"] = 3
    _same_tables(scenario.with_overrides({"investors": groups}), monkeypatch)


def test_memory_per_investor_is_its_watchlist_not_the_market():
    # 40 tokens, each fundamental investor following 3: its belief and its share of its
    # group's arrays are 3 entries; its holdings at most 3.
    scenario = small_scenario(**{"clients": [{"count": 40, "behaviour": "honest"}],
                                 "fl.dataset": {"name": "digits", "n_samples": 1200},
                                 "steps": 20})
    model = WallStreetFedsModel(_watching(3, scenario))
    for _ in range(20):
        model.step()
    crowds = [c for c in model.view.groups.values() if isinstance(c, _WatchCrowd)]
    assert len(crowds) == 1
    (crowd,) = crowds
    assert crowd.gaps(model.view).shape == (3 * len(crowd.members),)
    for inv in model.investors:
        if inv.watch is None:
            continue
        assert len(inv.held) <= 3
        if inv.strategy == "fundamental":
            assert inv.rule.belief.shape == (3,)


@pytest.mark.parametrize(("value", "message"), [
    (5, "investors[0].watchlist = 5: an investor follows a subset of the scenario's 4 "
        "tokens: give at most 4, or null to follow every token"),
    (0, "investors[0].watchlist = 0"),
])
def test_a_watchlist_beyond_the_tokens_is_refused_by_validate(value, message, tmp_path):
    data = small_scenario().to_dict()
    data["investors"][0]["watchlist"] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "abm.cli", "validate", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_a_strategy_that_follows_no_watchlist_refuses_one():
    with pytest.raises(ScenarioError, match=r"investors\[4\]\.watchlist.*manipulator.*follows "
                                            r"no watchlist"):
        small_scenario(**{"investors.4.watchlist": 1})
