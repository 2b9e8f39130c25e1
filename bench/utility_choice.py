"""Which default keeps GTG-Shapley from paying misbehaving clients for rounds it cannot score?

`python -m bench.utility_choice [--seeds N] [--rounds N]` (not part of `make bench`: it is a
measurement behind a modelling choice, documented in docs/model.md, section 7.5).
Setting: 8 breast_cancer clients (5 honest, 2 free riders, 1 label flipper),
the schema's default learning set-up, GTG-Shapley, one FL round per step, `direct` rewards
(the share s_i of each round's budget, paid as cash: pure allocation, no market).

Options compared (utility, GTG truncation tolerances, what an unranked round's budget does):

- accuracy utility, eps 0.001 (the old default, finer than one validation sample);
- accuracy utility, eps tied to the utility's resolution: one validation sample, 1 / n_val;
- negative-loss utility, eps 0.001 (the GTG default);
- negative-loss utility, eps 0 (no truncation: every round fully sampled);

each with `zero_total` `equal` (an unranked round is split equally) and `withhold` (kept by
the treasury). Printed per option: share of the paid rewards that went to the three
misbehaving clients (mean and 95 % t-interval over seeds), share of rounds the method could
not rank, the share of the budget paid at all, coalitions evaluated per round and seconds
of contribution measurement per round.
"""

from __future__ import annotations

import argparse

import pandas as pd

from abm.scenario import Scenario, parse_scenario
from analysis.markdown import markdown_table
from analysis.statistics import mean_ci

MISBEHAVING = ("free_rider", "label_flip")


def scenario(seed: int, rounds: int, metric: str, eps: float | None, zero_total: str) -> Scenario:
    """The measurement scenario; `eps=None` ties GTG's tolerances to one validation sample."""
    data = {
        "name": "utility_choice", "seed": seed, "steps": rounds, "round_every": 1,
        "fl": {"dataset": {"name": "breast_cancer"}, "metric": metric},
        "contribution": {"method": "gtg_shapley", "zero_total": zero_total},
        "rewards": {"policy": "direct", "budget": {"kind": "constant", "amount": 1000}},
        "clients": [{"count": 5, "behaviour": "honest"},
                    {"count": 2, "behaviour": "free_rider", "behaviour_params": {"mode": "global"}},
                    {"count": 1, "behaviour": "label_flip"}],
    }
    s = parse_scenario(data, source="bench.utility_choice")
    if eps is None:
        n_val = round(569 * s.fl.val_fraction)  # breast_cancer: 569 samples
        eps = 1.0 / n_val
    return s.with_overrides({"contribution.params": {"eps_between": eps, "eps_within": eps}})


def measure(seeds: int, rounds: int) -> pd.DataFrame:
    from abm.run import simulate

    options = [("accuracy", 0.001), ("accuracy", None), ("neg_loss", 0.001), ("neg_loss", 0.0)]
    rows = []
    for metric, eps in options:
        for seed in range(seeds):
            # The contributions do not depend on zero_total: one run, both rules applied.
            result = simulate(scenario(seed, rounds, metric, eps, "equal"))
            r = result.rounds
            bad = r["behaviour"].isin(MISBEHAVING)
            unranked = r.groupby("round")["unranked"].first()
            for rule in ("equal", "withhold"):
                paid = r["reward_usd"].where(~(r["unranked"] & (rule == "withhold")), 0.0)
                rows.append({
                    "utility": metric,
                    "eps": "1 val. sample" if eps is None else f"{eps:g}",
                    "zero_total": rule,
                    "seed": seed,
                    "misbehaving_share_pct": 100 * paid[bad].sum() / paid.sum(),
                    "unranked_rounds_pct": 100 * unranked.mean(),
                    "budget_paid_pct": 100 * paid.sum() / (1000 * rounds),
                    "evaluations_per_round": r.groupby("round")["evaluations"].first().mean(),
                    "contribution_s_per_round": result.timings["contribution"] / rounds,
                })
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.utility_choice")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    frame = measure(args.seeds, args.rounds)
    out = []
    for key, group in frame.groupby(["utility", "eps", "zero_total"], sort=False):
        row = dict(zip(("utility", "eps", "zero_total"), key, strict=True))
        for col in ("misbehaving_share_pct", "unranked_rounds_pct", "budget_paid_pct",
                    "evaluations_per_round", "contribution_s_per_round"):
            mean, low, high = mean_ci(group[col])
            digits = 3 if col.endswith("_s_per_round") else 1
            row[col] = f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
        out.append(row)
    print(f"{args.seeds} seeds x {args.rounds} rounds; mean [95 % t-interval]")
    print(markdown_table(pd.DataFrame(out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
