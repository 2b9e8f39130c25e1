"""Who `fund_costs` funds (docs/model.md, 7.14): `scenarios/costly_training.yaml` with no cash
(`market.client_cash: 0`), an offering of 0 tokens that funds costs, and the honest clients
training always; per behaviour (cost in USD per round), totals over seeds: "cannot pay"
events, USD raised for costs, tokens issued, rounds trained per client.

    python -m bench.fund_costs [POLICY] [SEEDS]      # defaults: equal 11,12,13
"""

from __future__ import annotations

import collections
import sys

from abm.amm import ONE
from abm.model import WallStreetFedsModel


def main(policy: str = "equal", seeds: tuple[int, ...] = (11, 12, 13)) -> None:
    rows: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0, 0, 0])
    for seed in seeds:
        m = WallStreetFedsModel("scenarios/costly_training.yaml", rng=seed, **{
            "rewards.policy": policy, "market.client_cash": 0.0,
            "clients.0.participation": {"kind": "always"},
            "market.issuance": {"kind": "offering", "tokens": 0.0, "fund_costs": True,
                                "end_step": 2}})
        m.run_model()
        key = {c.token: f"{c.strategy} (cost {c.cost // ONE})" for c in m.clients}
        for e in m.events:
            if e["kind"] == "leave" and "cannot pay" in e["text"]:
                rows[key[e["client"]]][0] += 1
        for c in m.clients:
            r = rows[key[c.token]]
            r[1] += c.funding_usd / ONE
            r[2] += c.issued / ONE
            r[3] += c.rounds_participated
            r[4] += 1
    print(f"policy {policy}, seeds {list(seeds)}: per behaviour, totals over seeds "
          f"({m.config.n_rounds} rounds a run)")
    for k, (cant, usd, tokens, rounds, n) in sorted(rows.items()):
        print(f"  {k:22s} cannot-pay events {cant:3.0f}  funding_usd {usd:8.1f}  "
              f"tokens issued {tokens:7.0f}  rounds trained per client {rounds / n:5.1f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "equal",
         tuple(int(s) for s in args[1].split(",")) if len(args) > 1 else (11, 12, 13))
