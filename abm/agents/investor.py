"""Third-party investors: a registered strategy decides, the agent enforces the limits."""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np

from abm.agents.strategies import Order, Strategy
from abm.agents.switching import NoSwitching, SwitchingRule
from abm.agents.trader import BASE, DUST, Trader, decision_units
from abm.amm import ONE, InvariantViolation, to_units
from abm.streams import stream

if TYPE_CHECKING:
    from abm.model import WallStreetFedsModel
    from abm.scenario import InvestorGroup


#: An order's side (`Order.side`), as a C-level getter.
_side = itemgetter(1)


class Investor(Trader):
    """An investor with cash and a strategy (see `abm.agents.strategies`).

    Limits, as fractions (its group's, `abm.scenario.InvestorGroup`): `max_trade` of its USD
    per buy, `max_position` of its wealth in any one token, `max_slippage` price impact per
    trade. It sells only tokens it holds. It acts in a step with probability `activation`
    (its own coin, drawn every step) and scales every order its strategy asks for by its own
    `size_scale` (docs/model.md, section 7.9).

    With a watchlist (its group's `watchlist: w`, a strategy that follows one) it follows
    `watch`, a uniformly random subset of `w` tokens of its own: it buys its genesis
    inventory in them only and its strategy trades them only, so that it holds no other
    token; what it keeps and does per step is then of the size of its watchlist, not of the
    market (docs/model.md, section 7.9).

    Its random streams, each keyed by its account (docs/model.md, section 4.9):
    `agent:<account>` its strategy's decisions (a noise trader's coins), `.../traits` its
    own parameter values (drawn once, at `start`), `.../clock` its activation coins (one per
    step), `.../signal` what it observes of each round (a fundamental investor's noise),
    `.../watchlist` the tokens it follows (drawn once, at construction; never without a
    watchlist).
    """

    agent_type = "investor"

    def __init__(self, model: WallStreetFedsModel, strategy: Strategy,
                 spec: InvestorGroup, switching: SwitchingRule | None = None,
                 alternatives: dict[str, Strategy] | None = None) -> None:
        super().__init__(model, "", strategy.name, spec.max_slippage)
        self.account = f"investor:{self.unique_id}"
        self.start_cash = spec.cash  # USD (display units) minted to it at genesis
        self.inventory = spec.inventory  # share of it spent on tokens at genesis
        self.rule = strategy
        if switching is None:
            switching = NoSwitching()
        self.max_trade = spec.max_trade
        self.max_position = spec.max_position
        self.activation = spec.activation
        self.size_dispersion = spec.size_dispersion
        self.size_scale = 1.0  # set by `start`
        #: The token indices it follows, ascending (None: every token); drawn here, before
        #: genesis, as it buys its inventory in them.
        self.watch: list[int] | None = None
        if spec.watchlist is not None and strategy.follows_watchlist:
            drawn = self._own_stream("watchlist").choice(
                len(model.client_ids), size=spec.watchlist, replace=False)
            self.watch = sorted(drawn.tolist())
        strategy.follow(self.watch)
        #: Its group's switching rule (`abm.agents.switching`; `none`: it keeps `rule`).
        self.switching = switching
        #: One instance of each strategy it may use, by name (its group's own, `strategy`,
        #: among them), each following its watchlist; `rule` is the active one. Without
        #: switching only its own.
        self.rules: dict[str, Strategy] = {strategy.name: strategy}
        for name, instance in (alternatives or {}).items():
            instance.follow(self.watch)
            self.rules[name] = instance
        self._own = strategy

    def buy_inventory_at_genesis(self, issuer: str) -> int:
        """Spend `inventory` of the cash on every token it follows (every token without a
        watchlist) equally at its pool's price, buying from `issuer` (the federation's
        treasury), which mints it, as a liquidity provider buys its token side at genesis:
        no swap, no price move. Returns the USD paid (base units). The inventory's value is
        the same share of its cash whatever its watchlist: with `w` tokens each gets 1/w
        of it (docs/model.md, section 5)."""
        ledger, paid = self.market.ledger, 0
        tokens = list(self.market.pools)
        if self.watch is not None:
            tokens = [tokens[j] for j in self.watch]
        per_token = to_units(self.start_cash * self.inventory) // len(tokens)
        for token in tokens:
            reserve_token, reserve_base = self.market.pools[token].reserves
            # Rounded down: the issuer never sells below the pool's price.
            bought = per_token * reserve_token // reserve_base
            if not bought:
                continue
            ledger.transfer(self.account, issuer, BASE, per_token)
            ledger.mint(self.account, token, bought)
            paid += per_token
        return paid

    def _own_stream(self, part: str) -> np.random.Generator:
        return stream(self.model.config.seed, f"agent:{self.account}/{part}")

    def start(self) -> None:
        """Draw this investor's own values (order-size factor, then its strategy's), once the
        model's view holds the prior signal."""
        traits = self._own_stream("traits")
        sigma = self.size_dispersion
        # Mean 1 across investors, so dispersion changes who trades big, not the total.
        self.size_scale = float(np.exp(sigma * traits.standard_normal() - sigma * sigma / 2))
        self.rule.start(self.model.view, traits)
        # The other strategies it may switch to: streams of their own, so that its own
        # strategy's draws are those of an investor that never switches.
        others = {name: rule for name, rule in self.rules.items() if rule is not self._own}
        self._others = [(rule, self._own_stream(f"signal:{name}"))
                        for name, rule in others.items()]
        self._rngs = {name: self._own_stream(f"decide:{name}") for name in others}
        for name, rule in others.items():
            rule.start(self.model.view, self._own_stream(f"traits:{name}"))
        #: Instances whose decisions draw (`Strategy.draws`): while idle they draw in every
        #: step in which it acts, so that their stream's use does not depend on the market.
        self._drawers = [(rule, self._rngs[name]) for name, rule in others.items()
                         if rule.draws]
        if self._own.draws and len(self.rules) > 1:
            self._drawers.insert(0, (self._own, self.stream))
        self._clock = self._own_stream("clock")
        self._coins: list[float] = []
        self._signal = self._own_stream("signal")
        #: The stream its active strategy decides from: its own (`agent:<account>`), or the
        #: stream of the instance it switched to.
        self._rng = self.stream
        ledger, account = self.market.ledger, self.account
        self._view = self.model.view
        # Live read-only books (`Ledger.live`): a balance is one dict lookup. The lists of
        # every token's book and pool are the model's, shared by all investors.
        self._usd = ledger.live(BASE)
        self._books = books = self.model.token_books
        self._pools = self.model.token_pools
        #: `watch` as an index array (the prices of its tokens: `_wealth`).
        self._w = None if self.watch is None else np.asarray(self.watch, dtype=np.intp)
        #: Its non-zero token balances by token index (base units), what its strategy
        #: decides from (`Strategy.orders`). Only its own swaps change an investor's tokens
        #: (rewards reach it as USD, never as tokens), so each swap updates the entry from
        #: the ledger and nothing else has to; `check_holdings` proves it against the ledger
        #: (after every step of a `check=True` run). With a watchlist it buys only watched
        #: tokens, so it holds no other.
        scope = range(len(books)) if self.watch is None else self.watch
        self.held = {j: b for j in scope if (b := books[j].get(account, 0))}

    def check_holdings(self) -> None:
        """Raise `InvariantViolation` unless `held` is this investor's ledger balances, and
        (with a watchlist) it holds only tokens it follows."""
        ledger = {j: b for j, book in enumerate(self._books) if (b := book.get(self.account, 0))}
        if ledger != self.held:
            raise InvariantViolation(f"{self.account}: holdings {self.held} but the ledger "
                                     f"says {ledger}")
        if self.watch is not None and not ledger.keys() <= set(self.watch):
            raise InvariantViolation(f"{self.account}: holds tokens "
                                     f"{sorted(ledger.keys() - set(self.watch))} outside its "
                                     f"watchlist {self.watch}")

    def observe_round(self) -> None:
        """The federation published a round: the strategy updates what it believes."""
        view = self.model.view
        self._own.observe_round(view, self._signal)
        for rule, signal in self._others:
            rule.observe_round(view, signal)

    def switch_to(self, name: str) -> None:
        """Make its instance of strategy `name` the active one (`abm.agents.switching`)."""
        self.rule = self.rules[name]
        self.strategy = name
        self._rng = self.stream if self.rule is self._own else self._rngs[name]

    def _coin(self) -> float:
        """This step's activation coin: the clock stream's next uniform (drawn in blocks
        ahead, the same numbers one at a time would give)."""
        if not self._coins:
            self._coins = self._clock.random(256).tolist()[::-1]
        return self._coins.pop()

    def act(self) -> None:
        # The coin is drawn every step, before anything is looked at, so that the number
        # of draws never depends on the market (docs/model.md, section 4.9).
        if self.activation < 1.0 and self._coin() >= self.activation:
            return
        cash_units = self._usd.get(self.account, 0)
        rule = self.rule
        orders = rule.orders(self._view, cash_units, self.held, self._rng)
        if self._drawers:
            for idle, rng in self._drawers:
                if idle is not rule:
                    idle.orders(self._view, cash_units, self.held, rng)
        if orders or rule.pending_events:
            self.execute(orders, cash_units)

    def execute(self, orders: list[Order], cash_units: int) -> None:
        """Record the strategy's events; trade `orders` within the limits (docs/model.md,
        section 7.9): decided in display units from the balances before the first order
        (the wealth for `max_position` only when there is a buy), traded in base units.

        The wealth (cash plus every holding at the live prices, a numpy dot product as
        `_wealth` computes it) matters only when the position limit binds, i.e. when
        `max_position * wealth - have * price` is below the buy's other two limits. For a
        first order that is a buy, a float sum over the held tokens estimates it to ~1e-15
        relative; if that estimate clears the other limits by far more than its error, the
        limit cannot bind and the exact wealth is skipped (the result is the same float
        either way); otherwise, and for any later buy, the exact wealth is computed.
        """
        view = self._view
        if self.rule.pending_events:
            for kind, token, text in self.rule.pop_events():
                self.model.record_event(kind, client=view.tokens[token],
                                        agent_id=self.unique_id, text=text)
        if not orders:
            return
        held, prices = self.held, view.price_list
        # The holdings before the first order (a swap updates `held`), read per order once
        # it is worth a swap.
        before = held
        wealth = None
        if len(orders) > 1:
            before = held.copy()
            if "buy" in map(_side, orders[1:]):
                wealth = self._wealth(cash_units)
        scale = self.size_scale
        record = self.model.marks.orders.record
        row = self.mark_row
        for j, side, size in orders:
            # On record (`abm.agents.orders`): asked, done and each limit's cut, base units.
            want = size * scale
            # decision_units(want) < DUST, inlined (most orders of a step are sales of dust
            # holdings): not an order worth a swap (docs/model.md, 7.12).
            if not want * ONE >= DUST:
                continue
            asked = int(want * ONE)
            have = before.get(j, 0) / ONE
            if side == "buy":
                usd = min(want, self.max_trade * cash_units / ONE)
                # Orders below DUST are never swapped (`Trader._swap_at`), and the limits
                # below only shrink an order: skip them before the wealth and the swap.
                if usd * ONE < DUST:
                    record(row, True, 0.0, asked, 0, asked)
                    continue
                capped = decision_units(usd)
                cost = have * prices[j]
                if wealth is None:
                    exact = self._room_decides(usd, cash_units, cost)
                    if exact is None:  # the room is negative: no buy
                        record(row, True, 0.0, asked, 0, asked - capped, capped)
                        continue
                    if exact:
                        wealth = self._wealth(cash_units)
                if wealth is not None:
                    usd = min(usd, self.max_position * wealth - cost)
                units = decision_units(usd)
                if units < DUST:
                    record(row, True, 0.0, asked, 0, asked - capped, capped)
                    continue
                cash = self._usd.get(self.account, 0)
                sent = units if units < cash else cash
                if sent < DUST:
                    record(row, True, 0.0, asked, 0, asked - capped + units, capped - units)
                    continue
                self._trade(j, BASE, sent)
                record(row, True, 0.0, asked, self.last_in, asked - capped + units - sent,
                       capped - units)
            else:
                price = prices[j]
                balance = held.get(j, 0)
                units = decision_units(min(want, have))
                sent = units if units < balance else balance
                if sent < DUST:  # else the swap would refuse it (amount <= balance)
                    record(row, False, price, asked, 0, asked)
                    continue
                self._trade(j, self._pools[j].token, sent)
                record(row, False, price, asked, self.last_in, asked - sent)

    def execute_reference(self, orders: list[Order], cash_units: int) -> None:
        """`execute` as first written, the reference its fast path is tested against
        (`tests/test_fast_paths.py`): the wealth from the whole holdings vector whenever
        there is a buy, and every order through `buy` / `sell`."""
        view = self.model.view
        for kind, token, text in self.rule.pop_events():
            self.model.record_event(kind, client=view.tokens[token], agent_id=self.unique_id,
                                    text=text)
        if not orders:
            return
        account, books = self.account, self._books
        held = [books[o.token].get(account, 0) / ONE for o in orders]
        if any(o.side == "buy" for o in orders):
            if self.watch is None:
                holdings = np.array([book.get(account, 0) / ONE for book in books])
                wealth = cash_units / ONE + float(holdings @ view.prices)
            else:  # the tokens it follows, the only ones it holds
                holdings = np.array([books[j].get(account, 0) / ONE for j in self.watch])
                wealth = cash_units / ONE + float(holdings @ view.prices[self._w])
        scale = self.size_scale
        record = self.model.marks.orders.record
        for order, have in zip(orders, held, strict=True):
            token = view.tokens[order.token]
            asked = decision_units(order.size * scale)
            if asked < DUST:
                continue
            if order.side == "buy":
                after_cash = min(order.size * scale, self.max_trade * cash_units / ONE)
                capped = decision_units(after_cash)
                if capped < DUST:  # the cash limit leaves nothing worth a swap
                    record(self.mark_row, True, 0.0, asked, 0, asked)
                    continue
                room = self.max_position * wealth - have * view.prices[order.token]
                units = decision_units(min(after_cash, room))
                if units < DUST:  # the position limit leaves nothing worth a swap
                    record(self.mark_row, True, 0.0, asked, 0, asked - capped, capped)
                    continue
                self._refresh_held(order.token,
                                   self.buy(token, units, asked=asked, cash=asked - capped,
                                            position=capped - units))
            else:
                self._refresh_held(order.token,
                                   self.sell(token, decision_units(min(order.size * scale,
                                                                       have)), asked=asked,
                                             cash=asked - decision_units(min(order.size
                                                                             * scale, have))))

    def _refresh_held(self, j: int, filled: int) -> None:
        if filled:
            balance = self._books[j].get(self.account, 0)
            if balance:
                self.held[j] = balance
            else:
                self.held.pop(j, None)

    def _room_decides(self, usd: float, cash_units: int, cost: float) -> bool | None:
        """Whether the position limit's room `max_position * wealth - cost` must be computed
        exactly for a buy of `usd` (True: it may be the smallest limit); False: it is surely
        above `usd` (the buy is `usd`); None: it is surely negative (no buy). Decided on
        estimates of the wealth, in floats to ~1e-15 relative, with a margin of 1e-9: first
        cash plus this token's holding (a lower bound: the other holdings only add), then
        cash plus every holding. The exact wealth (`_wealth`) is the same float either way:
        whenever the answer is False or None, min(usd, room) is usd, or not positive."""
        mp = self.max_position
        cash = cash_units / ONE
        room = mp * (cash + cost) - cost
        if room - usd > 1e-9 * (usd + mp * cash + cost):
            return False
        prices = self._view.price_list
        wealth = cash + sum([units / ONE * prices[i] for i, units in self.held.items()])
        room = mp * wealth - cost
        margin = 1e-9 * (usd + mp * wealth + cost)
        if room - usd > margin:
            return False
        if room < -margin:
            return None
        return True

    def _wealth(self, cash_units: int) -> float:
        """Cash plus every token at the live prices (USD): the position limit's wealth, the
        holdings vector (tokens, (n,)) times the prices; with a watchlist, the vector of
        its watched tokens (w,), the only ones it holds, times theirs. (`ndarray.dot` is the
        same float64 dot kernel as `@` on two vectors, with less call overhead.)"""
        if self.watch is not None:
            held = self.held
            holdings = [held.get(j, 0) / ONE for j in self.watch]
            return cash_units / ONE + float(np.array(holdings).dot(self._view.prices[self._w]))
        holdings = [0.0] * len(self._books)
        for j, units in self.held.items():
            holdings[j] = units / ONE
        return cash_units / ONE + float(np.array(holdings).dot(self._view.prices))

    def _trade(self, j: int, asset_in: str, amount: int) -> None:
        """Swap `amount` of `asset_in` (USD or token j) on token j's pool, and bring `held`
        up to date from the ledger."""
        self._refresh_held(j, self._swap_at(self._pools[j], j, asset_in, amount))
