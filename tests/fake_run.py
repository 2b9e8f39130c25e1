"""A small synthetic but self-consistent run folder, for analysis tests until real runs exist.

`write_fake_run` simulates, in plain floats, a toy version of the product: one
constant-product pool per client token (0.3 % fee kept in the pool and credited to liquidity
shares), investors of four strategies that swap, two liquidity providers (one leaves late in
the run), clients that cash out part of their tokens after each round, and a federation that
distributes a fixed budget per round through one of the five policies. It writes the exact
table schemas of docs/architecture.md. What holds by construction, and what the tests lean on:
- every agent's `wealth == usd + token_value + lp_value`, and `model` `wealth/<type>` is the
  sum of `agents.wealth` over that type;
- `price/k == reserve_usd/k / reserve_token/k`; `supply/k` changes only by mint and burn;
- `model.reward_usd` per step is the sum of that step's `rounds.reward_usd`;
- an LP's `lp_value − hodl_value − fees_earned` is its impermanent loss while it holds shares;
- `wealth_if_sold <= wealth`: withdraw the liquidity shares, then sell each token alone into
  its pool with the fee (float constant-product arithmetic), plus the USD held.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

FEE = 0.003
BUDGET_USD = 100.0  # reward budget per round
INVESTOR_CASH_USD = 1_000.0
CLIENT_TOKENS = 1_000.0
POOL_TOKENS = 1_000.0
POOL_USD = 1_000.0
TRADE_USD = 20.0
CASH_OUT_FRACTION = 0.1
# Share of each pool's seed liquidity owned by the federation and the two LPs.
OWNERS = {"federation": 0.5, "lp0": 0.3, "lp1": 0.2}
BEHAVIOURS = ("honest", "free_rider", "honest", "noisy_labels", "small_data", "label_flip")
QUALITY = {"honest": 1.0, "small_data": 0.5, "noisy_labels": 0.3, "label_flip": -0.2,
           "free_rider": 0.0}
STRATEGIES = ("fundamental", "momentum", "mean_reversion", "noise")
POLICIES = ("equal", "direct", "mint", "buyback", "dividend")


@dataclass
class _Pool:
    tokens: float
    usd: float
    shares: dict[str, float] = field(default_factory=dict)
    volume_step: float = 0.0
    fees_step: float = 0.0

    @property
    def price(self) -> float:
        return self.usd / self.tokens

    @property
    def total_shares(self) -> float:
        return sum(self.shares.values())

    def share_value(self, owner: str) -> float:
        total = self.total_shares
        return self.shares.get(owner, 0.0) / total * 2 * self.usd if total else 0.0

    def _credit_fee(self, fee_usd: float, fees: dict[str, float]) -> None:
        total = self.total_shares
        for owner, s in self.shares.items():
            fees[owner] = fees.get(owner, 0.0) + fee_usd * s / total
        self.fees_step += fee_usd

    def buy_tokens(self, usd_in: float, fees: dict[str, float]) -> float:
        effective = usd_in * (1 - FEE)
        out = effective * self.tokens / (self.usd + effective)
        self._credit_fee(usd_in * FEE, fees)
        self.usd += usd_in
        self.tokens -= out
        self.volume_step += usd_in
        return out

    def sell_tokens(self, tokens_in: float, fees: dict[str, float]) -> float:
        self._credit_fee(tokens_in * FEE * self.price, fees)
        effective = tokens_in * (1 - FEE)
        out = effective * self.usd / (self.tokens + effective)
        self.tokens += tokens_in
        self.usd -= out
        self.volume_step += out
        return out

    def liquidation(self, owner: str, tokens_held: float) -> float:
        """USD from burning `owner`'s shares and selling them with `tokens_held` (no change)."""
        fraction = self.shares.get(owner, 0.0) / self.total_shares if self.total_shares else 0.0
        tokens, usd = self.tokens * (1 - fraction), self.usd * (1 - fraction)
        amount = tokens_held + self.tokens * fraction
        effective = amount * (1 - FEE)
        return self.usd * fraction + (effective * usd / (tokens + effective) if amount else 0.0)

    def remove(self, owner: str) -> tuple[float, float]:
        fraction = self.shares[owner] / self.total_shares
        del self.shares[owner]
        tokens, usd = self.tokens * fraction, self.usd * fraction
        self.tokens -= tokens
        self.usd -= usd
        return tokens, usd


@dataclass
class _Agent:
    agent_id: int
    agent_type: str
    strategy: str
    client: str
    key: str
    usd: float
    tokens: dict[str, float] = field(default_factory=dict)
    deposit: dict[str, tuple[float, float]] = field(default_factory=dict)


def write_fake_run(
    path: str | Path,
    *,
    n_clients: int = 4,
    n_steps: int = 30,
    round_every: int = 10,
    investors_per_strategy: int = 2,
    policy: str = "buyback",
    seed: int = 0,
) -> Path:
    """Write a run folder at `path` (created; must not exist) and return its path.

    Defaults: 4 clients (honest, free_rider, honest, noisy_labels), 8 investors (2 per
    strategy), 2 LPs, 30 steps, a round every 10 steps (3 rounds), the `buyback` policy.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=False)
    rng = np.random.default_rng(seed)
    clients = [f"c{i:02d}" for i in range(n_clients)]
    behaviours = {c: BEHAVIOURS[i % len(BEHAVIOURS)] for i, c in enumerate(clients)}
    pools = {c: _Pool(POOL_TOKENS, POOL_USD) for c in clients}
    seed_shares = math.sqrt(POOL_TOKENS * POOL_USD)
    for pool in pools.values():
        pool.shares = {owner: f * seed_shares for owner, f in OWNERS.items()}
    supply = {c: POOL_TOKENS + CLIENT_TOKENS for c in clients}

    agents: list[_Agent] = [_Agent(1, "federation", "", "", "federation",
                                   usd=BUDGET_USD * (n_steps // round_every + 1))]
    for c in clients:
        agents.append(_Agent(len(agents) + 1, "client", behaviours[c], c, f"client:{c}",
                             usd=0.0, tokens={c: CLIENT_TOKENS}))
    for strategy in STRATEGIES:
        for j in range(investors_per_strategy):
            agents.append(_Agent(len(agents) + 1, "investor", strategy, "",
                                 f"{strategy}{j}", usd=INVESTOR_CASH_USD))
    exit_step = max(1, int(0.8 * n_steps))
    for key, rule in (("lp0", "never"), ("lp1", f"at_step_{exit_step}")):
        agents.append(_Agent(len(agents) + 1, "lp", rule, "", key, usd=0.0,
                             deposit={c: (POOL_TOKENS * OWNERS[key], POOL_USD * OWNERS[key])
                                      for c in clients}))
    by_key = {a.key: a for a in agents}
    fees: dict[str, float] = {}

    accuracy, loss = 0.5, 1.0
    last_contribution = dict.fromkeys(clients, 0.0)
    cumulative = dict.fromkeys(clients, 0.0)
    prev_price = {c: pools[c].price for c in clients}
    model_rows: list[dict[str, object]] = []
    agent_rows: list[dict[str, object]] = []
    round_rows: list[dict[str, object]] = []
    n_round = 0

    def record(step: int, reward: float, cost: float) -> None:
        wealth_by_type = {"client": 0.0, "investor": 0.0, "lp": 0.0, "federation": 0.0}
        if_sold_by_type = dict.fromkeys(wealth_by_type, 0.0)
        for a in agents:
            token_value = sum(q * pools[t].price for t, q in a.tokens.items())
            lp_value = sum(p.share_value(a.key) for p in pools.values())
            wealth = a.usd + token_value + lp_value
            if_sold = a.usd + sum(p.liquidation(a.key, a.tokens.get(t, 0.0))
                                  for t, p in pools.items())
            holding = a.agent_type == "lp" and lp_value > 0
            hodl = (sum(tq * pools[t].price + uq for t, (tq, uq) in a.deposit.items())
                    if holding else 0.0)
            agent_rows.append({
                "step": step, "agent_id": a.agent_id, "agent_type": a.agent_type,
                "strategy": a.strategy, "client": a.client, "usd": a.usd,
                "token_value": token_value, "lp_value": lp_value, "wealth": wealth,
                "wealth_if_sold": if_sold,
                "fees_earned": fees.get(a.key, 0.0) if a.agent_type == "lp" else 0.0,
                "hodl_value": hodl, "zapped_usd": 0.0,
            })
            wealth_by_type[a.agent_type] += wealth
            if_sold_by_type[a.agent_type] += if_sold
        row: dict[str, object] = {
            "step": step, "round": n_round, "accuracy": accuracy, "loss": loss,
            "reward_usd": reward, "volume_usd": sum(p.volume_step for p in pools.values()),
            "fees_usd": sum(p.fees_step for p in pools.values()),
            "distribution_cost_usd": cost, "federation_usd": by_key["federation"].usd,
            **{f"wealth/{t}": w for t, w in wealth_by_type.items()},
            **{f"wealth_if_sold/{t}": w for t, w in if_sold_by_type.items()},
        }
        for name, value in (("price", lambda p, c: p.price), ("reserve_token", lambda p, c:
                            p.tokens), ("reserve_usd", lambda p, c: p.usd),
                            ("supply", lambda p, c: supply[c]),
                            ("volume_usd", lambda p, c: p.volume_step),
                            ("contribution", lambda p, c: last_contribution[c])):
            for c in clients:
                row[f"{name}/{c}"] = value(pools[c], c)
        model_rows.append(row)
        for p in pools.values():
            p.volume_step = p.fees_step = 0.0

    record(0, 0.0, 0.0)
    for step in range(1, n_steps + 1):
        prices = {c: pools[c].price for c in clients}
        for a in agents:
            if a.agent_type == "investor" and rng.random() < 0.6:
                _trade(a, prices, prev_price, cumulative, pools, fees, rng)
        prev_price = prices
        reward_step = cost_step = 0.0
        if step % round_every == 0:
            n_round += 1
            gain = 0.08 / n_round
            contributions = {c: gain * QUALITY[behaviours[c]] * (1 + 0.2 * rng.standard_normal())
                             for c in clients}
            positive = {c: max(v, 0.0) for c, v in contributions.items()}
            total = sum(positive.values())
            shares = {c: positive[c] / total if total > 0 else 0.0 for c in clients}
            accuracy += gain * 0.5
            loss *= 0.9
            for c in clients:
                reward, minted, burned, cost, before = _distribute(
                    policy, c, shares[c], len(clients), pools[c], by_key, agents, fees)
                supply[c] += minted - burned
                reward_step += reward
                cost_step += cost
                cumulative[c] += contributions[c]
                last_contribution[c] = contributions[c]
                round_rows.append({
                    "round": n_round, "step": step, "client": c, "behaviour": behaviours[c],
                    "n_samples": 30 if behaviours[c] == "small_data" else 120,
                    "contribution": contributions[c], "share": shares[c],
                    "reward_usd": reward, "tokens_minted": minted, "tokens_burned": burned,
                    "price_before": before, "price_after": pools[c].price,
                    "accuracy": accuracy, "evaluations": 2 ** len(clients),
                    "method": "shapley_exact", "policy": policy,
                })
            for c in clients:  # clients cash out part of their own token after the round
                client = by_key[f"client:{c}"]
                amount = client.tokens.get(c, 0.0) * CASH_OUT_FRACTION
                client.tokens[c] -= amount
                client.usd += pools[c].sell_tokens(amount, fees)
        if step == exit_step:
            lp = by_key["lp1"]
            for c, pool in pools.items():
                tokens, usd = pool.remove("lp1")
                lp.tokens[c] = lp.tokens.get(c, 0.0) + tokens
                lp.usd += usd
        record(step, reward_step, cost_step)

    model = pd.DataFrame(model_rows)
    agents_table = pd.DataFrame(agent_rows)
    round_columns = ["round", "step", "client", "behaviour", "n_samples", "contribution",
                     "share", "reward_usd", "tokens_minted", "tokens_burned", "price_before",
                     "price_after", "accuracy", "evaluations", "method", "policy"]
    rounds = pd.DataFrame(round_rows, columns=round_columns).astype({
        "round": "int64", "step": "int64", "client": "str", "behaviour": "str",
        "n_samples": "int64", "evaluations": "int64", "method": "str", "policy": "str",
        **{c: "float64" for c in ("contribution", "share", "reward_usd", "tokens_minted",
                                  "tokens_burned", "price_before", "price_after",
                                  "accuracy")},
    })
    model.to_parquet(out / "model.parquet", index=False)
    agents_table.to_parquet(out / "agents.parquet", index=False)
    rounds.to_parquet(out / "rounds.parquet", index=False)
    config = {
        "name": f"fake-{policy}", "seed": seed, "steps": n_steps,
        "clients": {"n": n_clients, "behaviours": [behaviours[c] for c in clients]},
        "fl": {"round_every": round_every, "contribution": {"method": "shapley_exact"}},
        "rewards": {"policy": policy, "budget": {"kind": "constant", "usd": BUDGET_USD}},
        "market": {"fee_bps": 30},
        "versions": {"python": "3.12", "abm": "0.1.0"},
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    summary = {
        "scenario": f"fake-{policy}", "seed": seed, "steps": n_steps, "rounds": n_round,
        "final_accuracy": accuracy, "wall_time_s": 0.0,
        "time_by_phase": {"fl": 0.0, "contribution": 0.0, "market": 0.0, "collect": 0.0},
        "clients": {c: {"contribution": cumulative[c]} for c in clients},
        "ledger_checked": False,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return out


def _trade(a: _Agent, prices: dict[str, float], prev: dict[str, float],
           cumulative: dict[str, float], pools: dict[str, _Pool], fees: dict[str, float],
           rng: np.random.Generator) -> None:
    """One investor decision: buy `TRADE_USD` of one token or sell half of one holding."""
    clients = list(prices)
    if a.strategy == "fundamental":
        best = max(clients, key=lambda c: cumulative[c])
        worst = min(clients, key=lambda c: cumulative[c])
        buy, sell = (best, worst) if any(cumulative.values()) else (None, None)
    elif a.strategy == "momentum":
        move = {c: prices[c] / prev[c] - 1 for c in clients}
        top = max(clients, key=move.__getitem__)
        bottom = min(clients, key=move.__getitem__)
        buy = top if move[top] > 0 else None
        sell = bottom if move[bottom] < 0 else None
    elif a.strategy == "mean_reversion":
        cheap = min(clients, key=prices.__getitem__)
        dear = max(clients, key=prices.__getitem__)
        buy = cheap if prices[cheap] < 1.0 else None
        sell = dear if prices[dear] > 1.05 else None
    else:
        pick = clients[int(rng.integers(len(clients)))]
        buy, sell = (pick, None) if rng.random() < 0.5 else (None, pick)
    if sell is not None and a.tokens.get(sell, 0.0) > 0:
        amount = a.tokens[sell] * 0.5
        a.tokens[sell] -= amount
        a.usd += pools[sell].sell_tokens(amount, fees)
    elif buy is not None and a.usd >= TRADE_USD:
        a.usd -= TRADE_USD
        a.tokens[buy] = a.tokens.get(buy, 0.0) + pools[buy].buy_tokens(TRADE_USD, fees)


def _distribute(policy: str, c: str, share: float, n_clients: int, pool: _Pool,
                by_key: dict[str, _Agent], agents: list[_Agent], fees: dict[str, float],
                ) -> tuple[float, float, float, float, float]:
    """Pay client `c` its reward under `policy`.

    Returns (reward_usd, tokens_minted, tokens_burned, distribution_cost_usd, price_before).
    """
    federation, client = by_key["federation"], by_key[f"client:{c}"]
    before = pool.price
    if policy == "equal":
        reward = BUDGET_USD / n_clients
        federation.usd -= reward
        client.usd += reward
        return reward, 0.0, 0.0, 0.0, before
    reward = share * BUDGET_USD
    if reward <= 0:
        return 0.0, 0.0, 0.0, 0.0, before
    if policy == "direct":
        federation.usd -= reward
        client.usd += reward
        return reward, 0.0, 0.0, 0.0, before
    if policy == "mint":
        minted = reward / before
        client.tokens[c] = client.tokens.get(c, 0.0) + minted
        return reward, minted, 0.0, 0.0, before
    if policy == "buyback":
        federation.usd -= reward
        bought = pool.buy_tokens(reward, fees)
        # Fees and slippage: what the USD paid buys less than at the pre-trade spot price.
        return reward, 0.0, bought, reward - bought * before, before
    holders = {a.key: a.tokens.get(c, 0.0) for a in agents if a.tokens.get(c, 0.0) > 0}
    held = sum(holders.values())
    federation.usd -= reward
    for key, quantity in holders.items():
        by_key[key].usd += reward * quantity / held
    return reward, 0.0, 0.0, 0.0, before
