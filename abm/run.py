"""Run a scenario and write its run folder.

`simulate` runs a model and returns its tables (no files); `write_run` writes a run folder
atomically: everything is written into a hidden temporary folder beside the target, which is
renamed into place only once complete, so a crash or Ctrl-C never leaves a half-written run.
`prepare_output` checks before a simulation that the folder can be created (minutes of
results are never lost to a read-only disk). A temporary folder left by a process that was
killed outright (SIGKILL, power loss) is named for its host and process, and removed by the
next `write_run` into the same parent folder once that process is gone.

Run folder:
    config.yaml      the resolved scenario (every default filled in), seed, package versions
    model.parquet    one row per step (step 0 is genesis)
    agents.parquet   one row per agent per step
    rounds.parquet   one row per client per round
    events.parquet   one row per event (FL rounds, clients leaving and rejoining, offerings,
                     a manipulator's pump and dump): step, kind, client, agent_id, text
    summary.json     headline figures, per-client outcome measures, the money table,
                     time by phase
    counterfactual/  with `--counterfactual` (or `counterfactual: true`): the twin's run
                     folder (same seed, reward budget 0)

The figures and `report.md` are derived from these tables by `analysis` (`wsf run` ends by
writing them; `wsf report RUN_DIR` rewrites them). `abm` never imports `analysis`.

Outcome measures per client (summary.json `clients.<id>`, docs/model.md section 4.11 (Observation)):
`allotted_usd` (what the policy allotted), `allotted_vs_equal_pct` (against what `equal` would
have allotted), `attributable_usd` (realisable final wealth of the run minus its twin's, only
with a twin), `attributable_vs_equal_pct`, and `mtm_change_usd` (final minus initial wealth
marked at spot: speculation included, never a measure of reward).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml
from tqdm import tqdm

from abm.agents.orders import orders_summary
from abm.amm import ONE, JointLiquidation
from abm.scenario import Scenario, ScenarioError
from abm.tidy import long_tables

if TYPE_CHECKING:
    from abm.learning_log import LearningLog

TABLES = ("model", "agents", "rounds", "events")
COUNTERFACTUAL_DIR = "counterfactual"
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
    learns the same (`abm.agents.replay.learning_key`: a sweep point that differs in market
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
    final_if_sold = {a.account: model.market.liquidation_value(a.account) for a in model.agents}
    joint = model.market.joint_liquidation([a.account for a in model.agents])
    summary = _summary(model, tables, timings, check, joint)
    usd = model.usd_by_holder()
    outside = usd["costs"]
    # The books balance: every USD is an agent's, a pool's or the cost sink's.
    assert sum(usd.values()) == model.ledger.supply("USD")
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
    from abm.model import EVENT_COLUMNS, EVENT_KINDS

    edf = pd.DataFrame(model.events, columns=list(EVENT_COLUMNS))
    edf = edf.astype({"step": "int64", "agent_id": "int64"})
    # Text columns as categoricals, as in the agents table: clients in the model's order.
    clients = pd.CategoricalDtype(list(model.client_ids))
    edf["kind"] = pd.Categorical(edf["kind"], categories=list(EVENT_KINDS))
    edf["client"] = pd.Categorical(edf["client"], categories=["", *model.client_ids])
    if len(rdf):
        rdf = rdf.astype({"client": clients, "behaviour": "category", "method": "category",
                          "policy": "category"})
    return {"model": mdf, "agents": adf, "rounds": rdf, "events": edf}


def _summary(model, tables, timings, check: bool, joint: JointLiquidation) -> dict[str, Any]:
    cfg = model.config
    fed = model.federation
    rounds = tables["rounds"]
    agents = tables["agents"]
    first = agents[agents["step"] == 0].set_index("agent_id")
    last = agents[agents["step"] == agents["step"].max()].set_index("agent_id")
    equal = fed.equal_reference
    clients = {}
    for i, client in enumerate(model.clients):
        mine = rounds[rounds["client"] == client.token] if len(rounds) else rounds
        uid = client.unique_id
        clients[client.token] = {
            "behaviour": client.strategy,
            "account": client.account,
            "contribution": float(mine["contribution"].sum()) if len(mine) else 0.0,
            "allotted_usd": fed.allotted[i] / ONE,
            # Against what `equal` would have allotted it in the rounds it trained (the same
            # for every client when all train every round).
            "allotted_vs_equal_pct": _pct_vs(fed.allotted[i], fed.equal_reference_by_client[i]),
            "equal_split_usd": fed.equal_reference_by_client[i] / ONE,
            "equal_split_units": fed.equal_reference_by_client[i],
            "cash_paid_usd": fed.cash_to_client[i] / ONE,
            "dividends_usd": fed.dividends_to.get(client.account, 0) / ONE,
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
            "reward_if_sold_usd": fed.realised[i] / ONE,
            "individually_rational": fed.realised[i] >= client.cost_paid,
            "offering_usd": client.offering_usd / ONE,
            "offering_tokens": client.offering_tokens / ONE,
            "funding_usd": client.funding_usd / ONE,
            "tokens_issued": client.issued / ONE,
        }
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
        "total_reward_usd": fed.budget_in / ONE,
        "equal_split_usd": equal / ONE,
        "equal_split_units": equal,
        "execution_cost_usd": fed.total_cost / ONE,
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
            "ir_violations": sum(fed.realised[i] < c.cost_paid
                                 for i, c in enumerate(model.clients)),
        },
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


def money_table(model) -> dict[str, Any]:
    """Where the money went, from the model's exact books (USD display units).

    USD enters the economy only as endowments (genesis) and reward budgets (each round); it
    is never destroyed. `usd_by_holder` follows it per holder type and into the pools:
    `start` (right after genesis) + `rewards` (what the budget paid it: cash, dividends, a
    buyback's or mint's USD into a pool, the treasury's kept part) + `trading` (net USD from
    swaps, liquidity deposits and withdrawals, genesis token sales) = `end`, and the
    `trading` column sums to zero (trading only moves USD). `balanced` states that the end
    column sums exactly to endowments plus budgets (base units).
    """
    fed = model.federation
    ledger = model.ledger
    paid_clients = sum(fed.cash_to_client)
    into_pools = sum(fed.usd_to_pool)
    dividends = dict.fromkeys(HOLDER_TYPES, 0)
    for account, amount in fed.dividends_to.items():
        dividends[model.holder_type(account)] += amount
    kept = fed.budget_in - fed.usd_paid
    rewards = dict.fromkeys((*HOLDER_TYPES, "pool"), 0)
    for i, client in enumerate(model.clients):
        rewards[model.holder_type(client.account)] += fed.cash_to_client[i]
    for kind, amount in dividends.items():
        rewards[kind] += amount
    rewards["pool"] += into_pools
    rewards["federation"] += kept
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
    policy = model.config.rewards.policy
    return {
        "endowments_usd": {k: v / ONE for k, v in model.endowments.items()},
        "budgets_paid_in_usd": fed.budget_in / ONE,
        "budgets_paid_in_units": fed.budget_in,
        "to_clients_as_cash_usd": paid_clients / ONE,
        "into_pools_by_buybacks_usd": into_pools / ONE if policy == "buyback" else 0.0,
        "into_pools_as_mint_liquidity_usd": into_pools / ONE if policy == "mint" else 0.0,
        "dividends_to_holders_usd": {k: v / ONE for k, v in dividends.items()},
        "kept_by_treasury_usd": kept / ONE,
        "genesis_token_sales_usd": model.genesis_token_sales / ONE,
        "training_costs_usd": costs / ONE,
        "offering_usd": offering / ONE,
        "issued_for_costs_usd": funding / ONE,
        "fees_earned_usd": fees,
        "usd_by_holder": by_holder,
        "balanced": sum(end.values()) == endowed + fed.budget_in == ledger.supply("USD"),
    }


def default_out_dir(scenario: Scenario, root: Path = Path("runs")) -> Path:
    """`runs/<name>-seed<seed>-<UTC timestamp>`: a new folder name for every run."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = root / f"{scenario.name}-seed{scenario.seed}-{stamp}"
    n = 1
    while out.exists():
        n += 1
        out = root / f"{scenario.name}-seed{scenario.seed}-{stamp}-{n}"
    return out


class OutputExistsError(FileExistsError):
    """The run folder already exists: runs never overwrite silently."""


def refuse_existing(out: Path) -> None:
    """Raise `OutputExistsError` if `out` exists (checked before a run, and again on write)."""
    if os.path.lexists(out):
        raise OutputExistsError(
            f"{out}: the output folder already exists; runs never overwrite one. Choose another "
            f"--out, or remove it first."
        )


class OutputFolderError(ScenarioError):
    """The run folder cannot be created there (permission, a file in the path, read-only)."""


#: `.<run folder name>.wsf-tmp-<host>-<pid>.<random>`: the random part (`tempfile.mkdtemp`,
#: never a "-") keeps two writers of one process (threads) apart.
_TMP = re.compile(r"^\..+\.wsf-tmp-(?P<host>[^/]+)-(?P<pid>\d+)(?:\.\w+)?$")


def _make_tmp(out: Path) -> Path:
    """Create the temporary folder beside `out` (`tempfile.mkdtemp`: a new name, O_EXCL-like);
    its name fits wherever `out`'s does (a long name is cut, with a digest, to leave room for
    the suffix)."""
    from abm.paths import short_name

    suffix = f".wsf-tmp-{socket.gethostname()}-{os.getpid()}."
    room = 254 - len(os.fsencode(suffix)) - 8  # mkdtemp adds 8 characters
    return Path(tempfile.mkdtemp(prefix=f".{short_name(out.name, room)}{suffix}",
                                 dir=out.parent))


def prepare_output(out: Path) -> None:
    """Check, before a run, that `write_run` will be able to create `out`.

    Refuses an existing folder (`OutputExistsError`) and a place where no folder can be
    made (`OutputFolderError`: permission denied, a path under a file, a read-only file
    system), by creating the temporary folder (and any missing parent) and removing them
    again, so that nothing is left behind if the run fails. Also removes stale temporary
    folders of this tool there.
    """
    from abm.paths import check_path

    out = Path(out)
    check_path(out, "--out")
    refuse_existing(out)
    missing = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _make_tmp(out).rmdir()
    except OSError as exc:
        raise OutputFolderError(
            f"{out}: cannot create the run folder there ({exc.strerror or exc}"
            f"{f': {exc.filename}' if exc.filename else ''}); nothing was run. Choose another "
            f"--out in a writable place."
        ) from None
    finally:
        for folder in missing:  # innermost first; only the empty ones this call created
            with contextlib.suppress(OSError):
                folder.rmdir()
    if out.parent.exists():
        clean_stale_tmp(out.parent)


#: Beside a run folder being made by `wsf run`: `.<run folder name>.wsf-claim/`, holding
#: `owner` ("<host> <pid>"). Made with mkdir(2), which one process wins.
CLAIM_SUFFIX = ".wsf-claim"
#: A claim without its owner file older than this is one whose maker died at once.
CLAIM_GRACE_S = 60.0


@contextlib.contextmanager
def claim_output(out: Path) -> Iterator[None]:
    """Hold `out` for this process from before the run until the block ends.

    Of two `wsf run` started at once into the same new `--out`, the second finds the
    claim (an atomic mkdir beside `out`) and gets `OutputExistsError` naming the other
    process before it simulates anything; `write_run`'s final rename stays the arbiter for
    writers that do not claim. A claim left by a process of this host that is gone is
    removed. The claim is removed when the block ends, however it ends.
    """
    from abm.paths import short_name

    out = Path(out)
    claim = out.parent / f".{short_name(out.name, 254 - len(CLAIM_SUFFIX) - 1)}{CLAIM_SUFFIX}"
    missing = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        try:
            claim.mkdir()
            break
        except FileExistsError:
            holder = _claim_holder(claim)
            if holder is not None or attempt:
                raise OutputExistsError(
                    f"{out}: another `wsf run` ({holder or 'a process'}) is writing this "
                    "output folder; runs never overwrite one. Choose another --out, or wait "
                    "for it to finish.") from None
            _remove_stale(claim)
    try:
        (claim / "owner").write_text(f"{socket.gethostname()} {os.getpid()}",
                                     encoding="utf-8")
        refuse_existing(out)  # published by a writer that did not claim
        yield
    finally:
        shutil.rmtree(claim, ignore_errors=True)
        for folder in missing:  # innermost first; only the empty ones made for the claim
            with contextlib.suppress(OSError):
                folder.rmdir()


def _claim_holder(claim: Path) -> str | None:
    """Who holds `claim` ("pid N on HOST"), or None when it is stale (its owner on this
    host is gone, or it never got an owner within CLAIM_GRACE_S)."""
    try:
        host, pid = (claim / "owner").read_text(encoding="utf-8").split()
        holder = f"pid {int(pid)} on {host}"
    except (OSError, ValueError):
        try:
            young = time.time() - claim.stat().st_mtime < CLAIM_GRACE_S
        except OSError:
            return None
        return "a process starting" if young else None
    if host == socket.gethostname() and not _alive(int(pid)):
        return None
    return holder


def _remove_stale(claim: Path) -> None:
    """Rename a stale claim aside (one remover wins) and remove it."""
    aside = claim.with_name(f"{claim.name}.stale.{os.getpid()}.{time.monotonic_ns()}")
    with contextlib.suppress(OSError):
        claim.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)


def clean_stale_tmp(parent: Path) -> list[Path]:
    """Remove temporary run folders in `parent` whose writing process on this host is gone.

    Only folders named by `write_run` are touched, and only those of this host (on a shared
    file system another host's process may still be writing). Returns what was removed.
    """
    host = socket.gethostname()
    removed = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TMP.match(entry.name)
        if not match or match["host"] != host or _alive(int(match["pid"])):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to clean
        return True
    return True


def _write_tables(result: RunResult, folder: Path) -> None:
    """config.yaml, the tables and summary.json of `result` into `folder`."""
    (folder / "config.yaml").write_text(
        yaml.safe_dump(result.config, sort_keys=False), encoding="utf-8"
    )
    for name in TABLES:
        getattr(result, name).to_parquet(folder / f"{name}.parquet", index=False)
    for name, table in long_tables(result.model).items():  # tokens, wealth (abm.tidy)
        table.to_parquet(folder / f"{name}.parquet", index=False)
    (folder / "summary.json").write_text(
        json.dumps(result.summary, indent=2) + "\n", encoding="utf-8"
    )


def write_run(result: RunResult, out_dir: str | Path) -> Path:
    """Write the run folder `out_dir` atomically; refuses an existing folder.

    Written into a temporary folder beside `out_dir`, renamed into place when complete; on
    any exception, Ctrl-C or (through the CLI's handler) SIGTERM the temporary folder is
    removed.
    """
    out = Path(out_dir)
    refuse_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(out.parent)
    tmp = _make_tmp(out)
    try:
        _write_tables(result, tmp)
        if result.twin is not None:
            twin_dir = tmp / COUNTERFACTUAL_DIR
            twin_dir.mkdir()
            _write_tables(result.twin, twin_dir)
        try:
            # rename(2) is the one atomic step: of two writers of the same new folder, the
            # first renames; the second's rename finds a non-empty folder there.
            os.rename(tmp, out)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise
            refuse_existing(out)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def tables(model) -> dict[str, pd.DataFrame]:
    """The run tables of a model as it stands (`model`, `agents`, `rounds`, `events`: the
    columns and dtypes `write_run` writes), e.g. for the browser app's downloads after some
    steps of a run."""
    return _tables(model)
