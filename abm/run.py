"""Run a scenario: its tables and summary.

`simulate` runs a model (and its counterfactual twin if asked) and returns its tables, summary
and exact final values as a `RunResult` (no files); `abm.run_folder.write_run` writes that
into a run folder (the folder's layout is described there). `tables(model)` gives the run
tables of a model as it stands.

Outcome measures per client (summary.json `clients.<id>`, docs/model.md section 4.11 (Observation)):
`allotted_usd` (what the policy allotted), `allotted_vs_equal_pct` (against what `equal` would
have allotted), `attributable_usd` (realisable final wealth of the run minus its twin's, only
with a twin), `attributable_vs_equal_pct`, and `mtm_change_usd` (final minus initial wealth
marked at spot: speculation included, never a measure of reward). The reward figures are the
money book's (`abm.reward_book`), read here, never recomputed.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm import tqdm

from abm.agents.conduct import NOT_DRAWN, last_quarter_start
from abm.agents.orders import orders_summary
from abm.amm import BASE, ONE, JointLiquidation
from abm.rewards import Destination
from abm.run_folder import COUNTERFACTUAL_DIR
from abm.scenario import Scenario

if TYPE_CHECKING:
    from abm.learning_log import LearningLog

HOLDER_TYPES = ("client", "investor", "lp", "federation")


@dataclass
class RunResult:
    """The tables of one run (display units), its summary, and its twin if one ran.

    `final_if_sold` holds each account's realisable value at the last step if it sold alone
    (exact base units, `Market.liquidation_value`), the basis of each agent's run-minus-twin
    comparison; `final_joint` what each takes home when every agent sells at once
    (`Market.joint_liquidation`), which adds up across agents, with `joint_left` the USD the
    pools keep then and `outside_usd` the USD no agent or pool holds (the training-cost
    sink): `sum(final_joint) + joint_left + outside_usd` is all the USD there is.
    """

    model: pd.DataFrame
    agents: pd.DataFrame
    rounds: pd.DataFrame
    events: pd.DataFrame
    summary: dict[str, Any]
    config: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    final_if_sold: dict[str, int] = field(default_factory=dict)
    final_joint: dict[str, int] = field(default_factory=dict)
    joint_left: int = 0
    outside_usd: int = 0
    accounts: dict[str, str] = field(default_factory=dict)  # ledger account -> agent type
    #: The run's learning rounds (`abm.agents.replay`), which its twin replays.
    learning: LearningLog | None = None
    twin: RunResult | None = None


def simulate(scenario: Scenario, *, check: bool = False, progress: bool = False,
             counterfactual: bool | None = None,
             replay: LearningLog | None = None) -> RunResult:
    """Run `scenario` for `scenario.steps` steps and return its tables.

    check: prove the ledger invariant and the accounting identity after every step.
    progress: show a tqdm bar on stderr. counterfactual: also run the twin (same seed, reward
    budget 0) and fill the summary's attributable measures; `None` follows the scenario's
    `counterfactual` field. The twin replays the run's learning rounds while its clients
    choose the same participants (`abm.agents.replay`), so it costs the run's market and
    collection, plus whatever learning its own participation choices need.
    replay: the learning log (`RunResult.learning`) of an earlier run of a scenario that
    learns the same (`abm.learning_log.learning_key`: a sweep point that differs in market
    or reward parameters only); the run replays it as a twin does (the same tables).
    """
    if counterfactual is None:
        counterfactual = scenario.counterfactual
    result = _simulate_one(scenario, check=check, progress=progress, replay=replay)
    if counterfactual:
        twin = _simulate_one(scenario.twin(), check=check, progress=progress,
                             replay=result.learning)
        result.twin = twin
        _attribute(result, twin)
    return result


def _simulate_one(scenario: Scenario, *, check: bool, progress: bool,
                  replay: LearningLog | None = None) -> RunResult:
    # Small tensors: one thread per process is faster and keeps parallel sweeps honest.
    import torch

    from abm.model import WallStreetFedsModel

    torch.set_num_threads(1)
    started = time.perf_counter()
    model = WallStreetFedsModel(scenario, check=check, replay=replay)
    setup = time.perf_counter() - started
    for _ in tqdm(range(scenario.steps), desc=scenario.name, unit="step",
                  disable=not progress, leave=False):
        model.step()
    wall = time.perf_counter() - started
    tables = _tables(model)
    timings = {"setup": setup, **model.federation.timings, **model.timings, "total": wall}
    accounts = [a.account for a in model.agents]
    final_if_sold = dict(zip(accounts, model.market.liquidation_values(accounts), strict=True))
    joint = model.market.joint_liquidation(accounts)
    summary = _summary(model, tables, timings, check, joint)
    usd = model.usd_by_holder()
    outside = usd["costs"]
    # The books balance: every USD is an agent's, a pool's or the cost sink's.
    assert sum(usd.values()) == model.ledger.supply(BASE)
    return RunResult(
        model=tables["model"], agents=tables["agents"], rounds=tables["rounds"],
        events=tables["events"], summary=summary,
        config=resolved_config(model.config, device=model.federation.federation.device),
        timings=timings, final_if_sold=final_if_sold, final_joint=joint.values,
        joint_left=joint.left_in_pools, outside_usd=outside,
        accounts={a.account: a.agent_type for a in model.agents},
        learning=model.federation.log,
    )


def _pct_vs(amount: int, reference: int) -> float | None:
    """100 x (amount / reference - 1), computed exactly from integers; None if reference 0."""
    if reference == 0:
        return None
    return float(Fraction(100 * (amount - reference), reference))


def _attribute(result: RunResult, twin: RunResult) -> None:
    """Fill `attributable_*` of the run's summary: realisable final value, run minus twin.

    Both runs start from the same genesis, so the difference of final values is the
    difference of outcomes. Exact integers until the final division by ONE.
    """
    summary = result.summary
    for row in summary["clients"].values():
        account = row["account"]
        diff = result.final_if_sold[account] - twin.final_if_sold[account]
        row["attributable_usd"] = diff / ONE
        # against what `equal` would have allotted it in the rounds it trained (7.13)
        row["attributable_vs_equal_pct"] = _pct_vs(diff, row["equal_split_units"])
        row["attributable_joint_usd"] = (result.final_joint[account]
                                         - twin.final_joint[account]) / ONE
    alone: dict[str, int] = dict.fromkeys(HOLDER_TYPES, 0)
    joint: dict[str, int] = dict.fromkeys(HOLDER_TYPES, 0)
    for account, agent_type in result.accounts.items():
        alone[agent_type] += result.final_if_sold[account] - twin.final_if_sold[account]
        joint[agent_type] += result.final_joint[account] - twin.final_joint[account]
    for kind in HOLDER_TYPES:
        summary["holders"][kind]["attributable_usd"] = joint[kind] / ONE
        summary["holders"][kind]["attributable_alone_sum_usd"] = alone[kind] / ONE
    # Where the budget went, by the joint liquidation: an identity in base units. The run
    # and its twin start from the same genesis; the only USD that enters the run and not the
    # twin is the budget; it ends with the agents (by type), in the cost sink (the training
    # costs the run's clients paid beyond the twin's) or in the pools (locked liquidity).
    went = {kind: joint[kind] for kind in HOLDER_TYPES}
    went["training_costs"] = result.outside_usd - twin.outside_usd
    went["left_in_pools"] = result.joint_left - twin.joint_left
    paid_in = summary["money"]["budgets_paid_in_units"]
    if sum(went.values()) != paid_in:
        raise AssertionError(f"where the budget went does not add up: {went} against "
                             f"{paid_in} base units paid in")
    summary["reached_clients_usd"] = joint["client"] / ONE
    summary["reached_clients_pct"] = (float(Fraction(100 * joint["client"], paid_in))
                                      if paid_in else None)
    summary["budget_went_usd"] = {k: v / ONE for k, v in went.items()}
    summary["budget_went_pct"] = ({k: float(Fraction(100 * v, paid_in)) for k, v in went.items()}
                                  if paid_in else None)
    summary["counterfactual"] = {
        "ran": True, "folder": COUNTERFACTUAL_DIR,
        "twin_wall_time_s": twin.summary["wall_time_s"],
        "twin_rounds_replayed": twin.summary["learning_rounds_replayed"],
        "note": "twin = same scenario and seed, reward budget 0; attributable = realisable "
                "final wealth (if sold) of the run minus the twin's; the twin reuses the "
                "run's learning rounds while its clients train in the same rounds "
                "(twin_rounds_replayed), which gives the same tables as learning them again",
    }


def resolved_config(scenario: Scenario, *, device: str | None = None) -> dict[str, Any]:
    """The scenario with every default filled in, plus the versions that produced the run;
    ``device``: the device the learning core actually ran on, recorded as ``fl.device`` (so
    ``auto`` never hides where a run ran, and re-running config.yaml asks for the same one)."""
    versions = {"python": platform.python_version()}
    for pkg in ("wallstreetfeds-abm", "mesa", "torch", "numpy", "pandas"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    config = scenario.to_dict()
    if device is not None:
        config["fl"] = {**config["fl"], "device": device}
    return {**config, "versions": versions}


def _tables(model) -> dict[str, pd.DataFrame]:
    dc = model.datacollector
    mdf = dc.get_model_vars_dataframe().reset_index(drop=True)
    mdf.insert(0, "step", range(len(mdf)))
    mdf["round"] = mdf["round"].astype("int64")
    mdf["participating"] = mdf["participating"].astype("int64")
    adf = model.agents_dataframe()
    rdf = pd.DataFrame(model.round_rows)
    from abm.model import EVENT_COLUMNS

    edf = pd.DataFrame(model.events, columns=list(EVENT_COLUMNS))
    edf = edf.astype({"step": "int64", "agent_id": "int64"})
    # Text columns as categoricals, as in the agents table: clients in the model's order.
    clients = pd.CategoricalDtype(list(model.client_ids))
    edf["kind"] = pd.Categorical(edf["kind"], categories=list(model.event_kinds))
    edf["client"] = pd.Categorical(edf["client"], categories=["", *model.client_ids])
    if len(rdf):
        rdf = rdf.astype({"client": clients, "behaviour": "category", "action": "category",
                          "method": "category", "policy": "category"})
    return {"model": mdf, "agents": adf, "rounds": rdf, "events": edf}


def _client_summaries(model, rounds: pd.DataFrame, first: pd.DataFrame,
                      last: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """`summary.json`'s `clients`: per client (by token), its contributions, what the book
    allotted and paid it, its wealth change (at spot and if sold, from the agents table's
    first and last step, indexed by agent id) and its participation's economics (USD
    display units). The attributable fields are filled from the twin (`_attribute`)."""
    book = model.federation.book
    clients = {}
    for i, client in enumerate(model.clients):
        mine = rounds[rounds["client"] == client.token] if len(rounds) else rounds
        uid = client.unique_id
        clients[client.token] = {
            "behaviour": client.strategy,
            "account": client.account,
            "contribution": float(mine["contribution"].sum()) if len(mine) else 0.0,
            "allotted_usd": book.allotted[i] / ONE,
            # Against what `equal` would have allotted it in the rounds it trained (the same
            # for every client when all train every round).
            "allotted_vs_equal_pct": _pct_vs(book.allotted[i],
                                             book.equal_reference_by_client[i]),
            "equal_split_usd": book.equal_reference_by_client[i] / ONE,
            "equal_split_units": book.equal_reference_by_client[i],
            "cash_paid_usd": book.paid[Destination.CLIENT][i] / ONE,
            "dividends_usd": book.dividends_to.get(client.account, 0) / ONE,
            "attributable_usd": None,
            "attributable_vs_equal_pct": None,
            "attributable_joint_usd": None,
            "mtm_change_usd": float(last.loc[uid, "wealth"] - first.loc[uid, "wealth"]),
            "if_sold_change_usd": float(last.loc[uid, "wealth_if_sold"]
                                        - first.loc[uid, "wealth_if_sold"]),
            "final_price": model.market.pools[client.token].spot_price(),
            # Participation and its economics (docs/model.md, 7.13 and 7.14).
            "rounds_participated": client.rounds_participated,
            "cost_usd": client.cost_paid / ONE,
            "reward_if_sold_usd": book.realised[i] / ONE,
            "individually_rational": book.realised[i] >= client.cost_paid,
            "offering_usd": client.offering_usd / ONE,
            "offering_tokens": client.offering_tokens / ONE,
            "funding_usd": client.funding_usd / ONE,
            "tokens_issued": client.issued / ONE,
        }
    return clients


def _holder_summaries(model, first: pd.DataFrame, last: pd.DataFrame,
                      joint: JointLiquidation) -> dict[str, dict[str, Any]]:
    """`summary.json`'s `holders`: per holder type, its wealth at the first and last step
    (at spot, each member's sale alone, and its part of the joint liquidation; USD display
    units). `attributable_usd` is filled from the twin (`_attribute`)."""
    holders = {}
    for kind in HOLDER_TYPES:
        a, b = first[first["agent_type"] == kind], last[last["agent_type"] == kind]
        holders[kind] = {
            "initial_wealth_usd": float(a["wealth"].sum()),
            "final_wealth_usd": float(b["wealth"].sum()),
            # The sum of each member's sale alone: not additive (each assumes nobody else
            # sells), kept for the per-agent view (docs/model.md, section 4.11).
            "final_if_each_sold_alone_usd": float(b["wealth_if_sold"].sum()),
            # The group's part when every agent of the economy sells at once (additive).
            "final_if_all_sold_usd": sum(joint.values[x.account] for x in model.agents
                                         if x.agent_type == kind) / ONE,
            "mtm_change_usd": float(b["wealth"].sum() - a["wealth"].sum()),
            "if_sold_change_usd": float(b["wealth_if_sold"].sum() - a["wealth_if_sold"].sum()),
            "attributable_usd": None,
        }
    return holders


def _conduct_summary(model, rounds) -> dict[str, Any]:
    """What the adaptive clients chose (docs/model.md, 7.16): the share of their actions in
    the last quarter of the rounds (the last ceil(R / 4)) that were honest training (None
    without adaptive clients or rounds, or when none was invited then), each one's count of
    every action it took, and of the rounds the client sample did not invite it to (7.15),
    which hold no action and are left out of the share."""
    adaptive = [c.token for c in model.clients if c.adaptive]
    share = None
    if adaptive and len(rounds):
        tail = rounds[(rounds["round"] > last_quarter_start(int(rounds["round"].max())))
                      & rounds["client"].astype(str).isin(adaptive)
                      & (rounds["action"] != NOT_DRAWN)]
        share = float((tail["action"] == "honest").mean()) if len(tail) else None
    # One count over the table, not a scan of it per client (a thousand at cross-device scale).
    missed = (rounds.loc[rounds["action"] == NOT_DRAWN, "client"].astype(str).value_counts()
              if len(rounds) else pd.Series(dtype=int))
    return {
        "honest_share_last_quarter": share,
        "actions": {c.token: dict(sorted(c.action_counts.items()))
                    for c in model.clients if c.adaptive},
        "rounds_not_drawn": {c: int(missed.get(c, 0)) for c in adaptive},
    }


def _sybil_summary(model) -> dict[str, Any] | None:
    """What clients registering several identities got (docs/model.md, 7.18); None when
    every client registered one.

    `owners`: per owner of several identities, keyed by its first identity's id: its
    `identities`; `data_share_pct`, its distinct training samples as % of all owners'
    (what a data-proportional reward would give it); `reward_if_sold_usd`, what the payouts
    added to its identities' holdings valued if sold alone, summed (USD, `Payout` realised,
    exact base units summed); `reward_share_pct`, that as % of every client's; `cost_usd`,
    its identities' training costs; `net_usd`. `one_identity_mean_reward_share_pct`: the mean
    `reward_share_pct` of the owners that registered once, for comparison.
    """
    owners = model.config.client_owners()
    if len(set(owners)) == len(owners):
        return None
    book = model.federation.book
    sizes = model.federation.federation.client_sizes
    by_owner: dict[int, list[int]] = {}
    for i, owner in enumerate(owners):
        by_owner.setdefault(owner, []).append(i)
    total_data = sum(int(sizes[ids[0]]) for ids in by_owner.values())
    total_reward = sum(book.realised)
    table, single = {}, []
    for ids in by_owner.values():
        reward = sum(book.realised[i] for i in ids)
        share = 100.0 * reward / total_reward if total_reward else 0.0
        if len(ids) == 1:
            single.append(share)
            continue
        cost = sum(model.clients[i].cost_paid for i in ids)
        table[model.clients[ids[0]].token] = {
            "identities": [model.clients[i].token for i in ids],
            "data_share_pct": 100.0 * int(sizes[ids[0]]) / total_data,
            "reward_if_sold_usd": reward / ONE,
            "reward_share_pct": share,
            "cost_usd": cost / ONE,
            "net_usd": (reward - cost) / ONE,
        }
    return {"owners": table,
            "one_identity_mean_reward_share_pct": (sum(single) / len(single)
                                                   if single else None)}


def _summary(model, tables, timings, check: bool, joint: JointLiquidation) -> dict[str, Any]:
    cfg = model.config
    fed = model.federation
    book = fed.book
    rounds = tables["rounds"]
    agents = tables["agents"]
    first = agents[agents["step"] == 0].set_index("agent_id")
    last = agents[agents["step"] == agents["step"].max()].set_index("agent_id")
    equal = book.equal_reference
    clients = _client_summaries(model, rounds, first, last)
    holders = _holder_summaries(model, first, last, joint)
    if cfg.rewards.policy == "equal":
        handled = "paid as R / N like every round (the equal policy ignores contributions)"
    elif cfg.contribution.zero_total == "equal":
        handled = "split equally among all clients"
    else:
        handled = "withheld by the treasury"
    steps = cfg.steps
    return {
        "scenario": cfg.name,
        "seed": cfg.seed,
        "steps": steps,
        "rounds": fed.rounds_done,
        "policy": cfg.rewards.policy,
        "method": cfg.contribution.method,
        "final_accuracy": model.accuracy,
        "total_reward_usd": book.budget_in / ONE,
        "equal_split_usd": equal / ONE,
        "equal_split_units": equal,
        "execution_cost_usd": book.total_cost / ONE,
        # Filled from the twin (`_attribute`): what reached the clients, on the joint basis.
        "reached_clients_usd": None,
        "reached_clients_pct": None,
        "budget_went_usd": None,
        "budget_went_pct": None,
        "unranked_rounds": {
            "rounds": fed.unranked_rounds,
            "truncated": fed.truncated_rounds,
            "all_zero": fed.all_zero_rounds,
            "budget_usd": fed.unranked_budget / ONE,
            "handled": handled,
            "note": "rounds in which no client had a positive contribution (e.g. GTG's "
                    "between-round truncation scored all zero); their budget was "
                    + handled,
        },
        "zero_probe": {
            "mean_pct": sum(fed.probe_pcts) / len(fed.probe_pcts) if fed.probe_pcts else 0.0,
            "max_pct": max(fed.probe_pcts, default=0.0),
            "rounds_paid": int(sum(p > 0 for p in fed.probe_pcts)),
            "note": "what a phantom client sending a zero update (claiming the participants' "
                    "mean data size) would have been paid, % of each round's positive "
                    "contributions; above 0 the coalition game rewards sending nothing "
                    "(docs/model.md, section 7.5)",
        },
        "empty_rounds": {
            "rounds": fed.empty_rounds,
            "budget_usd": fed.empty_budget / ONE,
            "note": "rounds in which no client trained (every client had left or could not "
                    "pay its cost): the global model stayed as it was and the round's budget "
                    "was withheld by the treasury",
        },
        "participation": {
            "mean_participating": (float(rounds.groupby("round")["participating"].sum().mean())
                                   if len(rounds) else float(len(model.clients))),
            "final_participating": fed.last_participants,
            "clients": len(model.clients),
            "ir_violations": sum(book.realised[i] < c.cost_paid
                                 for i, c in enumerate(model.clients)),
        },
        "conduct": _conduct_summary(model, rounds),
        "sybil": _sybil_summary(model),
        "ledger_checked_every_step": check,
        "wall_time_s": round(timings["total"], 3),
        "steps_per_s": round(steps / timings["total"], 2) if timings["total"] else None,
        "time_by_phase_s": {k: round(v, 3) for k, v in timings.items() if k != "total"},
        # A twin's learning rounds taken from its run's log and never trained (0 otherwise).
        "learning_rounds_replayed": fed.replayed_rounds,
        "clients": clients,
        "holders": holders,
        "money": money_table(model),
        # Orders asked against done, and what each guard cut (docs/model.md, 7.12).
        "orders": orders_summary(model.marks.orders, model.marks.labels["agent_type"].tolist(),
                                 HOLDER_TYPES, {c.token: c.sales for c in model.clients}),
        "counterfactual": {"ran": False},
    }


#: The money table's key for each destination of the budgets (`abm.rewards.Destination`,
#: in its order); their values sum to `budgets_paid_in_usd`. Dividends are shown by the
#: holder type of the receiving accounts.
MONEY_DESTINATIONS = {
    Destination.CLIENT: "to_clients_as_cash_usd",
    Destination.POOL_PURCHASE: "into_pools_by_buybacks_usd",
    Destination.POOL_LIQUIDITY: "into_pools_as_mint_liquidity_usd",
    Destination.HOLDERS: "dividends_to_holders_usd",
    Destination.TREASURY: "kept_by_treasury_usd",
}


def money_table(model) -> dict[str, Any]:
    """Where the money went, from the model's exact books (USD display units).

    USD enters the economy only as endowments (genesis) and reward budgets (each round); it
    is never destroyed. The budgets' destinations are the money book's
    (`abm.reward_book.RewardBook.destinations`, one key each: cash to clients, into pools by
    purchase (buybacks) or as liquidity (mint), dividends by holder type, kept by the
    treasury), which sum to the budgets paid in. `usd_by_holder` follows USD per holder type
    and into the pools: `start` (right after genesis) + `rewards` (what the budget paid it,
    `RewardBook.by_holder`) + `trading` (net USD from swaps, liquidity deposits and
    withdrawals, genesis token sales) = `end`, and the `trading` column sums to zero (trading
    only moves USD). `balanced` states that the end column sums exactly to endowments plus
    budgets (base units).
    """
    book = model.federation.book
    ledger = model.ledger
    went = book.destinations()
    dividends = dict.fromkeys(HOLDER_TYPES, 0)
    for account, amount in book.dividends_to.items():
        dividends[model.holder_type(account)] += amount
    rewards = dict.fromkeys((*HOLDER_TYPES, "pool"), 0)
    for kind, amount in book.by_holder(model.holder_type).items():
        rewards[kind] += amount
    start, end = model.usd_at_genesis, model.usd_by_holder()
    # Training costs (7.13) and offerings (7.14) move USD between holder types outside the
    # rewards: clients pay the cost sink, and raise USD from their pools' buyers.
    costs = sum(c.cost_paid for c in model.clients)
    offering = sum(c.offering_usd for c in model.clients)
    funding = sum(c.funding_usd for c in model.clients)
    fees = dict.fromkeys(HOLDER_TYPES, 0.0)
    for agent in model.agents:
        fees[agent.agent_type] += agent.fees_earned
    paid_costs = dict.fromkeys((*HOLDER_TYPES, "pool", "costs"), 0)
    paid_costs["client"] = -costs
    paid_costs["costs"] = costs
    rewards["costs"] = 0
    by_holder = {
        kind: {"start": start[kind] / ONE, "rewards": rewards[kind] / ONE,
               "training_costs": paid_costs[kind] / ONE,
               "trading": (end[kind] - start[kind] - rewards[kind] - paid_costs[kind]) / ONE,
               "end": end[kind] / ONE}
        for kind in (*HOLDER_TYPES, "pool", "costs")
    }
    endowed = sum(model.endowments.values())
    table: dict[str, Any] = {
        "endowments_usd": {k: v / ONE for k, v in model.endowments.items()},
        "budgets_paid_in_usd": book.budget_in / ONE,
        "budgets_paid_in_units": book.budget_in,
    }
    # Every destination has its key (a KeyError here, not a table that stops summing to
    # the budgets, when a new one has none).
    for destination in Destination:
        table[MONEY_DESTINATIONS[destination]] = (
            {k: v / ONE for k, v in dividends.items()} if destination is Destination.HOLDERS
            else went[destination] / ONE)
    return {
        **table,
        "genesis_token_sales_usd": model.genesis_token_sales / ONE,
        "training_costs_usd": costs / ONE,
        "offering_usd": offering / ONE,
        "issued_for_costs_usd": funding / ONE,
        "fees_earned_usd": fees,
        "usd_by_holder": by_holder,
        "balanced": sum(end.values()) == endowed + book.budget_in == ledger.supply(BASE),
    }


def tables(model) -> dict[str, pd.DataFrame]:
    """The run tables of a model as it stands (`model`, `agents`, `rounds`, `events`: the
    columns and dtypes `write_run` writes), e.g. for the browser app's downloads after some
    steps of a run."""
    return _tables(model)
