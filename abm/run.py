"""Run a scenario and write its run folder.

`simulate` runs a model and returns its tables (no files); `write_run` writes a run folder
atomically: everything is written into a hidden temporary folder beside the target, which is
renamed into place only once complete, so a crash or Ctrl-C never leaves a half-written run.

Run folder:
    config.yaml      the resolved scenario (every default filled in), seed, package versions
    model.parquet    one row per step (step 0 is genesis)
    agents.parquet   one row per agent per step
    rounds.parquet   one row per client per round
    summary.json     headline figures, time by phase
    figures/         PNG and PDF figures (analysis.figures)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from tqdm import tqdm

from abm.amm import ONE
from abm.scenario import Scenario

TABLES = ("model", "agents", "rounds")


@dataclass
class RunResult:
    """The tables of one run (display units) and its summary."""

    model: pd.DataFrame
    agents: pd.DataFrame
    rounds: pd.DataFrame
    summary: dict[str, Any]
    config: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def simulate(scenario: Scenario, *, check: bool = False, progress: bool = False) -> RunResult:
    """Run `scenario` for `scenario.steps` steps and return its tables.

    check: prove the ledger invariant after every step. progress: show a tqdm bar on stderr.
    """
    # Small tensors: one thread per process is faster and keeps parallel sweeps honest.
    import torch

    from abm.model import WallStreetFedsModel

    torch.set_num_threads(1)
    started = time.perf_counter()
    model = WallStreetFedsModel(scenario, check=check)
    setup = time.perf_counter() - started
    for _ in tqdm(range(scenario.steps), desc=scenario.name, unit="step",
                  disable=not progress, leave=False):
        model.step()
    wall = time.perf_counter() - started
    tables = _tables(model)
    timings = {"setup": setup, **model.federation.timings, **model.timings, "total": wall}
    return RunResult(
        model=tables["model"], agents=tables["agents"], rounds=tables["rounds"],
        summary=_summary(model, tables, timings, check),
        config=resolved_config(model.config), timings=timings,
    )


def resolved_config(scenario: Scenario) -> dict[str, Any]:
    """The scenario with every default filled in, plus the versions that produced the run."""
    versions = {"python": platform.python_version()}
    for pkg in ("wallstreetfeds-abm", "mesa", "torch", "numpy", "pandas"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {**scenario.to_dict(), "versions": versions}


def _tables(model) -> dict[str, pd.DataFrame]:
    dc = model.datacollector
    mdf = dc.get_model_vars_dataframe().reset_index(drop=True)
    mdf.insert(0, "step", range(len(mdf)))
    mdf["round"] = mdf["round"].astype("int64")
    adf = dc.get_agent_vars_dataframe().reset_index()
    adf = adf.rename(columns={adf.columns[0]: "step", adf.columns[1]: "agent_id"})
    adf["step"] = adf["step"].astype("int64")
    adf = adf.sort_values(["step", "agent_id"], kind="stable").reset_index(drop=True)
    rdf = pd.DataFrame(model.round_rows)
    return {"model": mdf, "agents": adf, "rounds": rdf}


def _summary(model, tables, timings, check: bool) -> dict[str, Any]:
    cfg = model.config
    rounds = tables["rounds"]
    agents = tables["agents"]
    first = agents[agents["step"] == 0].set_index("agent_id")["wealth"]
    last = agents[agents["step"] == agents["step"].max()].set_index("agent_id")
    clients = {}
    for client in model.clients:
        mine = rounds[rounds["client"] == client.token] if len(rounds) else rounds
        clients[client.token] = {
            "behaviour": client.strategy,
            "contribution": float(mine["contribution"].sum()) if len(mine) else 0.0,
            "reward_usd": float(mine["reward_usd"].sum()) if len(mine) else 0.0,
            "received_usd": float(last.loc[client.unique_id, "wealth"]
                                  - first.loc[client.unique_id]),
            "final_price": model.market.pools[client.token].spot_price(),
        }
    steps = cfg.steps
    return {
        "scenario": cfg.name,
        "seed": cfg.seed,
        "steps": steps,
        "rounds": model.federation.rounds_done,
        "policy": cfg.rewards.policy,
        "method": cfg.contribution.method,
        "final_accuracy": float(model.federation.federation.accuracy),
        "total_reward_usd": float(rounds["reward_usd"].sum()) if len(rounds) else 0.0,
        "distribution_cost_usd": model.federation.total_cost / ONE,
        "ledger_checked_every_step": check,
        "wall_time_s": round(timings["total"], 3),
        "steps_per_s": round(steps / timings["total"], 2) if timings["total"] else None,
        "time_by_phase_s": {k: round(v, 3) for k, v in timings.items() if k != "total"},
        "clients": clients,
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
    if out.exists():
        raise OutputExistsError(
            f"{out}: the output folder already exists; runs never overwrite one. Choose another "
            f"--out, or remove it first."
        )


def write_run(result: RunResult, out_dir: str | Path, *, figures: bool = True) -> Path:
    """Write the run folder `out_dir` atomically; refuses an existing folder."""
    out = Path(out_dir)
    refuse_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        (tmp / "config.yaml").write_text(
            yaml.safe_dump(result.config, sort_keys=False), encoding="utf-8"
        )
        for name in TABLES:
            getattr(result, name).to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "summary.json").write_text(
            json.dumps(result.summary, indent=2) + "\n", encoding="utf-8"
        )
        if figures:
            from analysis.figures import make_figures
            from analysis.runs import load_run

            make_figures(load_run(tmp), tmp / "figures")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
