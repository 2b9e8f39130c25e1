"""Does a contribution method pay clients who sent nothing? The grid behind docs/model.md,
section 7.5 ("A null contribution is a null player").

`python -m bench.contribution_grid [--seeds N] [--rounds N] [--datasets ...]
[--partitions ...] [--rules ...] [--methods ...] [--out FILE.csv] [--markdown]` (part of
`make bench` at a reduced size, 1 seed x 10 rounds; the full grid of docs/model.md is
`--seeds 3 --rounds 30 --markdown`, about 12 min on 2 cores).

Each cell is one dataset, one partition and one seed: 10 clients, 5 honest, one trained on
noisy labels (half its labels redrawn), a free rider sending a zero update, a free rider
sending noise (sd 0.01 per coordinate), and two label flippers; the schema's default
learning set-up (MLP, lr 0.1, neg_loss utility); `rounds` FedAvg rounds, one per step. The
cell's federation is built by `abm.model.build_learning`, as a run builds it, and learns
once: every method and coalition rule measures the same rounds (the learning does not
depend on them). Contributions become shares as a `direct` run's would, under each rule for
negative scores (`carry`, the default, and `clip`) with `zero_total: withhold` (a round
nobody ranks pays nobody), so a client's share of the rewards is its share of `direct`'s
allotments.

Per (cell, coalition rule, method), printed as a mean over seeds with the worst seed:

- `misbehaving_pct`: share of the paid rewards that went to the four clients that send
  nothing useful (both free riders and both label flippers); an equal split gives them 40 %;
- `noisy_pct`: the noisy-labels client's share (it trains on half-right labels: it is not
  misbehaving, but worth less than an honest client);
- `free_rider_vs_lowest_honest`: the best-paid free rider's pay over the lowest-paid honest
  client's (< 1: no free rider paid more than any honest client);
- `quality_rho`: Spearman's rho of the clients' cumulative contributions with their known
  quality, `n_i (1 - 2 q_i)` for a client with `n_i` samples of which a share `q_i` is
  labelled wrong (honest 0; noisy labels `fraction (C - 1) / C`; label flip 1; a free rider
  0 samples): what a fair method should rank by;
- `probe_pct`: the mean over rounds of the share a phantom client sending a zero update would
  be paid (`abm.fl.shapley.zero_probe`, its positive value over the round's positive total);
- `evaluations`: coalitions evaluated per round.

Targets (issue 21), for every game-based method (data size pays a claim by definition: it is
reported, not targeted): misbehaving share < 5 % in every cell; no free rider paid more than
the lowest-paid honest client; quality rho >= 0.8 where clients differ in data size
(`quantity_skew`).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from abm.fl.game import CoalitionGame
from abm.fl.shapley import zero_probe
from abm.registry import create
from abm.rewards import CarriedContributions, shares_from_contributions
from abm.scenario import Scenario, parse_scenario
from abm.streams import stream

#: The clients of a cell, in order: (behaviour, count, parameters).
COMPOSITION = (
    ("honest", 5, {}),
    ("noisy_labels", 1, {"fraction": 0.5}),
    ("free_rider", 1, {"mode": "zero"}),
    ("free_rider", 1, {"mode": "noise"}),
    ("label_flip", 2, {}),
)
#: Clients that send nothing useful: the free riders and the label flippers.
MISBEHAVING = ("free_rider", "label_flip")
DATASETS = ("digits", "breast_cancer", "wine", "synthetic")
#: name -> (scheme, alpha)
PARTITIONS = {
    "iid": ("iid", 0.5),
    "dirichlet_0.3": ("dirichlet", 0.3),
    "dirichlet_0.5": ("dirichlet", 0.5),
    "quantity_skew": ("quantity_skew", 0.5),
}
RULES = ("round_weights", "coalition_fedavg")
GAME_METHODS = ("shapley_exact", "shapley_mc", "gtg_shapley", "leave_one_out")
#: Methods that play no game: measured once per cell, whatever the rule.
PLAIN_METHODS = ("data_size", "cosine")


#: Classes of each dataset: the label flippers' map is chosen so that every label is wrong.
CLASSES = {"digits": 10, "breast_cancer": 2, "wine": 3, "synthetic": 4}


def flip_everything(n_classes: int) -> dict:
    """A label flipper whose every label is wrong: the default map ``y -> C - 1 - y`` leaves
    the middle class of an odd number of classes as it is (wine's class 1: a third of a
    wine flipper's data stays right), so there a cycle ``y -> y + 1 mod C`` instead."""
    if n_classes % 2:
        return {"permutation": [(y + 1) % n_classes for y in range(n_classes)]}
    return {}


def cell_scenario(dataset: str, partition: str, seed: int, rounds: int,
                  composition=COMPOSITION) -> Scenario:
    """The scenario of one cell (its learning is what the grid measures)."""
    scheme, alpha = PARTITIONS[partition]
    flip = flip_everything(CLASSES[dataset])
    return parse_scenario({
        "name": "contribution_grid", "seed": seed, "steps": rounds, "round_every": 1,
        "fl": {"dataset": {"name": dataset}, "partition": {"scheme": scheme, "alpha": alpha}},
        "rewards": {"policy": "direct"},
        "clients": [{"count": count, "behaviour": b,
                     "behaviour_params": {**params, **(flip if b == "label_flip" else {})}}
                    for b, count, params in composition],
    }, source="bench.contribution_grid")


def quality(scenario: Scenario, sizes: np.ndarray, n_classes: int) -> np.ndarray:
    """Each client's known quality ``(n,)``: ``n_i (1 - 2 q_i)``, ``q_i`` its share of wrong
    labels (module docstring)."""
    out = []
    for (_, group), n in zip(scenario.client_groups(), sizes, strict=True):
        p = group.behaviour_params
        wrong = (p.fraction * (n_classes - 1) / n_classes if group.behaviour == "noisy_labels"
                 else p.fraction if group.behaviour == "label_flip" else 0.0)
        out.append(0.0 if group.behaviour == "free_rider" else n * (1 - 2 * wrong))
    return np.asarray(out)


def cosine_with_itself(result) -> np.ndarray:
    """The cosine method before issue 21 (for the before/after table): each update against
    the aggregate that includes it."""
    import torch

    U = result.updates.double()
    agg = torch.from_numpy(np.asarray(result.weights)) @ U
    denom = U.norm(dim=1) * agg.norm()
    return torch.where(denom > 0, (U @ agg) / torch.where(denom > 0, denom, 1.0),
                       0.0).numpy()


def payable(V: np.ndarray, negative: str) -> np.ndarray:
    """Each round's shares ``(rounds, n)`` from its contributions ``V (rounds, n)``, as a run
    computes them: ``clip`` (each round's positive part) or ``carry``
    (`abm.rewards.CarriedContributions`)."""
    if negative == "carry":
        carried = CarriedContributions(V.shape[1])
        V = np.array([carried.payable(v) for v in V])
    return np.array([shares_from_contributions(v, negative="clip", zero_total="withhold")
                     for v in V])


NEGATIVE_RULES = ("carry", "clip")


def measure_cell(scenario: Scenario, rules=RULES, methods=GAME_METHODS + PLAIN_METHODS,
                 legacy_cosine: bool = False, negative=NEGATIVE_RULES) -> list[dict]:
    """One row per (rule, method, negative rule) of the cell."""
    from abm.model import build_learning

    federation, _ = build_learning(scenario)
    seed = scenario.seed
    labels = [g.behaviour + (f"_{g.behaviour_params.mode}" if g.behaviour == "free_rider"
                             else "") for _, g in scenario.client_groups()]
    behaviour = np.array([g.behaviour for _, g in scenario.client_groups()])
    q = quality(scenario, federation.client_sizes, federation.n_classes)
    # one method instance per (rule, method), each drawing from the run's contribution stream
    plain = [m for m in methods if m in PLAIN_METHODS]
    games = [m for m in methods if m in GAME_METHODS]
    keys = [(rule, m) for rule in rules for m in games] + [("-", m) for m in plain]
    if legacy_cosine:
        keys.append(("-", "cosine_with_itself"))
    instances = {k: create("method", k[1], rng=stream(seed, "contribution"))
                 for k in keys if k[1] != "cosine_with_itself"}
    acc = {k: {"V": [], "evaluations": 0, "seconds": 0.0} for k in keys}
    probes = {rule: [] for rule in rules}
    probe_rng = {rule: stream(seed, "contribution.probe") for rule in rules}
    for _ in range(scenario.n_rounds):
        result = federation.run_round()
        by_rule = {}
        for rule in rules:
            game = result.game if rule == federation.coalition else CoalitionGame(
                federation.net, result.prev_params, result.updates, result.weights,
                federation.X_utility, federation.y_utility, metric=federation.metric,
                coalition=rule)
            by_rule[rule] = dataclasses.replace(result, game=game)
        for key in keys:
            rule, name = key
            res = by_rule.get(rule, result)
            t0 = time.perf_counter()
            if name == "cosine_with_itself":
                c, evaluations = cosine_with_itself(res), 0
            else:
                c = instances[key](res)
                evaluations = instances[key].evaluations_last_round
            a = acc[key]
            a["seconds"] += time.perf_counter() - t0
            a["evaluations"] += evaluations
            a["V"].append(c)
            if rule in probes and name == games[0]:
                value, _ = zero_probe(res.game, float(np.mean(res.weights)), probe_rng[rule])
                pos = np.maximum(c, 0).sum() + max(value, 0.0)
                probes[rule].append(100 * max(value, 0.0) / pos if pos > 0 else 0.0)
    rows = []
    for (rule, name), a in acc.items():
        V = np.array(a["V"])
        rho = spearmanr(V.sum(0), q).statistic
        for neg in negative:
            shares = payable(V, neg)
            paid = shares.sum(0)
            total = paid.sum()
            honest = paid[behaviour == "honest"]
            riders = paid[behaviour == "free_rider"]
            rows.append({
                "rule": rule, "method": name, "negative": neg,
                "misbehaving_pct": 100 * paid[np.isin(behaviour, MISBEHAVING)].sum() / total
                    if total else np.nan,
                "noisy_pct": 100 * paid[behaviour == "noisy_labels"].sum() / total
                    if total else np.nan,
                "free_rider_vs_lowest_honest": (riders.max() / honest.min() if honest.min() > 0
                                                else np.inf if riders.max() > 0 else 0.0),
                "quality_rho": float(rho) if np.isfinite(rho) else np.nan,
                "probe_pct": float(np.mean(probes[rule])) if probes.get(rule) else np.nan,
                "unranked_pct": 100 * float(np.mean(~(shares.sum(1) > 0))),
                "evaluations": a["evaluations"] / scenario.n_rounds,
                "seconds_per_round": a["seconds"] / scenario.n_rounds,
                **{f"pay_{label}_{i}": float(paid[i] / total) if total else np.nan
                   for i, label in enumerate(labels)},
            })
    return rows


def grid(seeds: int, rounds: int, datasets=DATASETS, partitions=tuple(PARTITIONS),
         rules=RULES, methods=GAME_METHODS + PLAIN_METHODS, legacy_cosine: bool = True,
         progress: bool = True) -> pd.DataFrame:
    rows = []
    for dataset in datasets:
        for partition in partitions:
            for seed in range(1, seeds + 1):
                t0 = time.perf_counter()
                scenario = cell_scenario(dataset, partition, seed, rounds)
                for row in measure_cell(scenario, rules, methods, legacy_cosine):
                    rows.append({"dataset": dataset, "partition": partition, "seed": seed,
                                 **row})
                if progress:
                    print(f"  {dataset:<13} {partition:<14} seed {seed}: "
                          f"{time.perf_counter() - t0:5.1f} s", flush=True)
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (rule, method, dataset, partition): means over seeds, the worst seed's
    misbehaving share and free-rider ratio, and whether the targets hold in every seed."""
    g = df.groupby(["rule", "method", "negative", "dataset", "partition"], sort=False)
    out = g.agg(misbehaving_pct=("misbehaving_pct", "mean"),
                misbehaving_worst=("misbehaving_pct", "max"),
                noisy_pct=("noisy_pct", "mean"),
                free_rider_ratio_worst=("free_rider_vs_lowest_honest", "max"),
                quality_rho=("quality_rho", "mean"),
                probe_pct=("probe_pct", "mean"),
                evaluations=("evaluations", "mean"),
                seconds_per_round=("seconds_per_round", "mean")).reset_index()
    out["targets_met"] = (out["misbehaving_worst"] < 5) & (out["free_rider_ratio_worst"] < 1)
    skew = out["partition"] == "quantity_skew"
    out.loc[skew, "targets_met"] &= out.loc[skew, "quality_rho"] >= 0.8
    return out


def overview(df: pd.DataFrame) -> pd.DataFrame:
    """Per (rule, method), over every cell: the mean and worst misbehaving share, the worst
    free-rider ratio, the mean and lowest quality rho (quantity skew cells), the mean probe
    share and the cells meeting every target."""
    s = summary(df)
    skew = s[s["partition"] == "quantity_skew"].groupby(["rule", "method", "negative"],
                                                        sort=False)
    g = s.groupby(["rule", "method", "negative"], sort=False)
    out = g.agg(misbehaving_mean=("misbehaving_pct", "mean"),
                misbehaving_worst=("misbehaving_worst", "max"),
                noisy_mean=("noisy_pct", "mean"),
                free_rider_ratio_worst=("free_rider_ratio_worst", "max"),
                probe_pct=("probe_pct", "mean"),
                evaluations=("evaluations", "mean"),
                cells_met=("targets_met", "sum"), cells=("targets_met", "size"))
    out["quality_rho_skew_mean"] = skew["quality_rho"].mean()
    out["quality_rho_skew_min"] = skew["quality_rho"].min()
    return out.reset_index()


#: The shipped default (after issue 21) and the utility it replaced (before), by
#: (coalition rule, negative-score rule).
AFTER = ("round_weights", "carry")
BEFORE = ("coalition_fedavg", "clip")


def markdown(df: pd.DataFrame) -> str:
    """docs/model.md's two tables: per cell, the default method (GTG) before and after; per
    method, over every cell, before and after (cosine before = against an aggregate that
    includes the client itself)."""
    s = summary(df)

    def pick(frame, rule_neg, method):
        rule, neg = rule_neg
        rule = "-" if method in (*PLAIN_METHODS, "cosine_with_itself") else rule
        return frame[(frame["rule"] == rule) & (frame["negative"] == neg)
                     & (frame["method"] == method)]

    def pct(mean, worst):
        return f"{mean:.1f} ({worst:.1f})"

    def ratio(x):
        return "inf" if not np.isfinite(x) else f"{x:.2f}"

    lines = ["| dataset | partition | before: misbehaving % | after: misbehaving % | "
             "after: free rider / lowest honest | after: quality rho | after: targets |",
             "|---|---|---|---|---|---|---|"]
    before, after = pick(s, BEFORE, "gtg_shapley"), pick(s, AFTER, "gtg_shapley")
    for (_, b), (_, a) in zip(before.iterrows(), after.iterrows(), strict=True):
        lines.append(f"| {a['dataset']} | {a['partition']} | "
                     f"{pct(b['misbehaving_pct'], b['misbehaving_worst'])} | "
                     f"{pct(a['misbehaving_pct'], a['misbehaving_worst'])} | "
                     f"{ratio(a['free_rider_ratio_worst'])} | {a['quality_rho']:.2f} | "
                     f"{'met' if a['targets_met'] else 'not met'} |")
    o = overview(df)
    lines += ["", "| method | before: misbehaving % mean (worst cell) | after | "
              "after: worst free rider / lowest honest | after: quality rho, quantity skew "
              "(lowest) | after: probe % | after: cells meeting every target |",
              "|---|---|---|---|---|---|---|"]
    for method in GAME_METHODS + PLAIN_METHODS:
        b = pick(o, BEFORE, "cosine_with_itself" if method == "cosine" else method)
        a = pick(o, AFTER, method)
        if b.empty or a.empty:
            continue
        b, a = b.iloc[0], a.iloc[0]
        probe = "-" if not np.isfinite(a["probe_pct"]) else f"{a['probe_pct']:.2f}"
        lines.append(
            f"| {method} | {pct(b['misbehaving_mean'], b['misbehaving_worst'])} | "
            f"{pct(a['misbehaving_mean'], a['misbehaving_worst'])} | "
            f"{ratio(a['free_rider_ratio_worst'])} | {a['quality_rho_skew_mean']:.2f} "
            f"({a['quality_rho_skew_min']:.2f}) | {probe} | "
            f"{int(a['cells_met'])} / {int(a['cells'])} |")
    return "\n".join(lines)


def record_rows(df: pd.DataFrame, seeds: int, rounds: int) -> None:
    """`make bench`'s summary rows: the default method's misbehaving share and free-rider
    ratio over every cell, and the probe, against issue 21's targets."""
    from bench.table import record

    o = overview(df)
    gtg = o[(o["rule"] == AFTER[0]) & (o["negative"] == AFTER[1])
            & (o["method"] == "gtg_shapley")].iloc[0]
    size = f"{seeds} seed(s) x {rounds} rounds, {int(gtg['cells'])} cells"
    record("null_player_share", f"GTG default: misbehaving share, worst cell ({size})",
           f"{gtg['misbehaving_worst']:.1f} % (mean {gtg['misbehaving_mean']:.1f} %)",
           "< 5 % in every cell", gtg["misbehaving_worst"] < 5)
    record("null_player_ratio", "GTG default: best free rider / lowest honest, worst cell",
           f"{gtg['free_rider_ratio_worst']:.2f}", "< 1",
           gtg["free_rider_ratio_worst"] < 1)
    record("null_player_probe", "GTG default: a zero update's share (probe), mean",
           f"{gtg['probe_pct']:.3f} %", "0", gtg["probe_pct"] < 1e-6)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.contribution_grid",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--partitions", nargs="+", default=list(PARTITIONS))
    parser.add_argument("--rules", nargs="+", default=list(RULES))
    parser.add_argument("--methods", nargs="+", default=list(GAME_METHODS + PLAIN_METHODS))
    parser.add_argument("--out", help="write every cell's row to this CSV")
    parser.add_argument("--markdown", action="store_true",
                        help="also print docs/model.md's before/after tables")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    df = grid(args.seeds, args.rounds, args.datasets, args.partitions, args.rules,
              args.methods)
    if args.out:
        df.to_csv(args.out, index=False)
    pd.set_option("display.width", 200, "display.max_columns", 30, "display.max_rows", 500)
    print(f"\n{args.seeds} seeds x {args.rounds} rounds, "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(summary(df).round(3).to_string(index=False))
    print()
    print(overview(df).round(3).to_string(index=False))
    if args.markdown:
        print()
        print(markdown(df))
    if set(AFTER) <= set(args.rules) | {AFTER[1]} and "gtg_shapley" in args.methods:
        record_rows(df, args.seeds, args.rounds)


if __name__ == "__main__":
    main()
