"""Benchmark of cross-device scale (issue 27): many clients, each with its token market, with
client sampling (`fl.clients_per_round`), against the shipped baseline in the same run.

    python -m bench.scale [--clients N] [--per-round K] [--investors N] [--steps N]
                          [--watchlist W | --watchlist none]

Workload: `--clients` FL clients on synthetic data (20 features, 4 classes, 40 samples a
client; a tenth of them zero-update free riders), one pool each, `--investors` investors (a
quarter each of `fundamental`, `momentum`, `mean_reversion` and `noise`), each following a
watchlist of `--watchlist` tokens of its own (default 10, at most the clients; `none`: every
token, the scenario default), 20 liquidity providers, `--steps` steps with a round every 10,
`--per-round` clients sampled per round, GTG-Shapley contributions, the `direct` policy,
agent rows every 10 steps, no twin. The reference: `scenarios/baseline.yaml` without its
twin, simulated in the same invocation.

Each runs in its own child process (`python -m bench.scale --one ...`), so that its peak
resident memory (`ru_maxrss`) is its own. Printed: each one's simulation time and phase split
(`summary.json`'s `time_by_phase_s`), its peak RSS, the ratio of the simulation times
(target <= 25 for 1,000 clients, 50 per round, 2,000 investors, 100 steps), the peak RSS
(target <= 4 GiB) and the share of the rewards the free riders were allotted (target < 2 %).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from bench.table import record

TARGET_RATIO = 25.0
TARGET_RSS_GIB = 4.0
TARGET_FREE_RIDER_PCT = 2.0
STRATEGIES = ("fundamental", "momentum", "mean_reversion", "noise")


def workload(clients: int, per_round: int, investors: int, steps: int,
             watchlist: int | None = 10) -> dict[str, Any]:
    """The cross-device scenario (see the module docstring), as a scenario mapping;
    `watchlist` the tokens each investor follows (None: every token)."""
    riders = max(1, clients // 10)
    watch = None if watchlist is None else min(watchlist, clients)
    return {
        "name": f"scale_{clients}", "seed": 1, "steps": steps, "round_every": 10,
        "fl": {"dataset": {"name": "synthetic", "n_samples": 40 * clients + 10 * clients,
                           "n_features": 20, "n_classes": 4},
               "model": "logreg", "partition": {"scheme": "iid"},
               "clients_per_round": per_round, "utility_samples": 500},
        "contribution": {"method": "gtg_shapley"},
        "rewards": {"policy": "direct", "budget": {"amount": 1000}},
        "clients": [{"count": clients - riders, "behaviour": "honest"},
                    {"count": riders, "behaviour": "free_rider"}],
        "investors": [{"strategy": s, "count": investors // len(STRATEGIES), "cash": 1000,
                       "watchlist": watch} for s in STRATEGIES],
        "liquidity_providers": [{"count": 20, "cash": 10_000}],
        "collect": {"agents_every": 10},
        "counterfactual": False,
    }


def _one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Simulate one workload in this process; its times, peak RSS and free riders' share."""
    # Imported before the clock starts: the figure is the simulation's, not the imports'.
    import torch  # noqa: F401

    from abm.run import simulate
    from abm.scenario import load_scenario, parse_scenario

    if kind == "baseline":
        scenario = load_scenario("scenarios/baseline.yaml").with_overrides(
            {"counterfactual": False})
    else:
        scenario = parse_scenario(workload(args.clients, args.per_round, args.investors,
                                           args.steps, args.watchlist), source="bench/scale.py")
    start = time.perf_counter()
    result = simulate(scenario, counterfactual=False)
    wall = time.perf_counter() - start  # setup, the steps and the tables
    rounds = result.rounds
    allotted = rounds.groupby("behaviour")["reward_usd"].sum()
    total = float(allotted.sum())
    riders = float(allotted.get("free_rider", 0.0))
    return {
        "wall_s": wall,
        "phases": result.summary["time_by_phase_s"],
        "steps": scenario.steps,
        "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "free_rider_pct": 100 * riders / total if total > 0 else 0.0,
        "clients": scenario.n_clients,
    }


def _child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.scale", "--one", kind, "--clients", str(args.clients),
           "--per-round", str(args.per_round), "--investors", str(args.investors),
           "--steps", str(args.steps), "--watchlist", str(args.watchlist).lower()]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _phases(phases: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in phases.items())


def _watchlist(text: str) -> int | None:
    if text.lower() == "none":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("a watchlist is at least 1 token (or none)")
    return value


def _watching(watchlist: int | None) -> str:
    return "every token" if watchlist is None else f"{watchlist} tokens"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--investors", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--watchlist", type=_watchlist, default=10,
                        help="tokens each investor follows (none: every token)")
    parser.add_argument("--one", choices=("baseline", "scale"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, args)))
        return
    base = _child("baseline", args)
    scale = _child("scale", args)
    ratio = scale["wall_s"] / base["wall_s"]
    print(f"baseline ({base['clients']} clients, {base['steps']} steps): "
          f"{base['wall_s']:.2f} s ({_phases(base['phases'])}), peak RSS "
          f"{base['rss_gib']:.2f} GiB")
    print(f"scale ({scale['clients']} clients, {args.per_round} per round, {args.investors} "
          f"investors watching {_watching(args.watchlist)}, {scale['steps']} steps): "
          f"{scale['wall_s']:.2f} s "
          f"({_phases(scale['phases'])}), {1000 * scale['wall_s'] / scale['steps']:.0f} ms "
          f"per step, peak RSS {scale['rss_gib']:.2f} GiB")
    print(f"ratio {ratio:.1f}x the baseline (target <= {TARGET_RATIO:g}x); free riders "
          f"allotted {scale['free_rider_pct']:.2f} % of the rewards (target < "
          f"{TARGET_FREE_RIDER_PCT:g} %)")
    size = (f"{scale['clients']} clients, {args.per_round}/round, {args.investors} investors, "
            f"watching {_watching(args.watchlist)}")
    record("scale", f"cross-device run ({size}) / baseline, simulation time",
           f"{ratio:.1f}x", f"<= {TARGET_RATIO:g}x", ratio <= TARGET_RATIO)
    record("scale_rss", f"cross-device run ({size}), peak RSS",
           f"{scale['rss_gib']:.2f} GiB", f"<= {TARGET_RSS_GIB:g} GiB",
           scale["rss_gib"] <= TARGET_RSS_GIB)
    record("scale_free_riders", f"cross-device run ({size}), free riders' share of rewards",
           f"{scale['free_rider_pct']:.2f} %", f"< {TARGET_FREE_RIDER_PCT:g} %",
           scale["free_rider_pct"] < TARGET_FREE_RIDER_PCT)


if __name__ == "__main__":
    main()
