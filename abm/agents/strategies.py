"""Investor strategies (docs/model.md, section 7.9): each one class.

A strategy is a registered component (`abm.registry`): its `name`, its `Params` (default,
range, unit, meaning of every parameter) and its `decide` rule, declared once here.

A strategy only *decides*: given the public `MarketView`, its cash (USD) and its token holdings
(tokens, display units) it returns orders. The `Investor` agent enforces limits (cash, position,
price impact) and executes them, so no strategy can trade what its investor does not hold.

**Two paths, one rule.** `decide` is the reference: one investor, its whole holdings vector.
`orders` is what the model calls: the same orders (tested order for order and table for
table, `tests/test_fast_paths.py`), with what a strategy derives from the view computed once
for all of its investors (arrays over investors and tokens) and kept until a trade changes a
price (`MarketView.version`; a group then recomputes only that token's entries: a
fundamental group one row of its tokens x investors array, a chartist group one float), and
the investor's holdings given as the mapping of its non-zero balances, so that a decision
looks only at the tokens it holds. A strategy that does not override `orders` runs `decide`.

Each investor has its own strategy instance. `start` draws the investor's own values of the
parameters that vary across its group (declared with `abm.registry.spread`) and its initial
private state; `observe_round` lets it update that state when a round is published, whether or
not it trades in that step. Both draw from the investor's own streams, a fixed number of draws
whatever the market does (docs/model.md, section 4.9).

**Watchlists.** An investor of a group with `watchlist: w` follows its own `w` tokens
(`Strategy.watch`, ascending token indices, drawn by its investor; docs/model.md, 7.9): a
strategy that declares `follows_watchlist` buys only among them (the first largest signal
among the watched, as `argmax` over the watched entries) and sells only watched holdings (an
investor holds no other: it buys only watched tokens, and nothing else gives it tokens). Its
fast path looks only at the watched tokens, and what it keeps per investor is the size of its
watchlist, not of the market. Without a watchlist (`watch` None, the default) every token is
watched and the code paths are those of before watchlists existed.

Orders: `Order(token, "buy", size)` spends `size` USD; `Order(token, "sell", size)` sells `size`
tokens. Sizes are display-unit floats; the agent converts them to base units.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, ClassVar, Literal, NamedTuple

import numpy as np
from pydantic import model_validator

from abm.amm import ONE
from abm.registry import Component, param, spread, spread_value
from abm.registry import Params as _Params

if TYPE_CHECKING:
    from abm.agents.view import MarketView


class Order(NamedTuple):
    """Buy `size` USD worth of token `token`, or sell `size` tokens of it. (A named tuple:
    an investor makes hundreds every step.)"""

    token: int  # index into MarketView.tokens
    side: Literal["buy", "sell"]
    size: float


class Strategy(Component):
    """Base class: `decide` turns the public view into orders; parameters in `Params`."""

    kind = "strategy"
    #: Whether the strategy follows a watchlist (`investors[i].watchlist`): it chooses among
    #: the tokens of `watch` and decides about no other. A strategy that names its own
    #: tokens (a manipulator's target) does not, and a group of it refuses a watchlist.
    follows_watchlist: ClassVar[bool] = False
    #: Whether `orders` draws from the stream it is given (a noise trader's coins). An
    #: investor that may switch (`abm.agents.switching`) calls `orders` of such an idle
    #: instance too, discarding the orders, so that its draws never depend on the market.
    draws: ClassVar[bool] = False

    def __init__(self, params=None, /, **values) -> None:
        super().__init__(params, **values)
        #: Events the last `decide` caused, as (kind, token index, text) for
        #: `WallStreetFedsModel.record_event`, each kind one of the class's `events`; see
        #: `pop_events`.
        self.pending_events: list[tuple[str, int, str]] = []
        self.follow(None)

    def follow(self, watch: list[int] | None) -> None:
        """Follow the tokens `watch` (ascending token indices; None: every token): its
        investor's watchlist, set before `start`."""
        #: The token indices this investor follows, ascending; None: every token.
        self.watch = watch
        #: `watch` as an index array and each watched token's position in it.
        self._w = None if watch is None else np.asarray(watch, dtype=np.intp)
        self._pos = None if watch is None else {j: k for k, j in enumerate(watch)}

    def _pick(self, signal: np.ndarray, highest: bool) -> int:
        """The reference choice of a buy: the token of the first largest (`highest`) or
        smallest `signal` (n,) among the watched tokens, as `argmax` / `argmin`."""
        choose = np.argmax if highest else np.argmin
        if self.watch is None:
            return int(choose(signal))
        return self.watch[int(choose(signal[self._w]))]

    def _watched(self, mask: np.ndarray) -> np.ndarray:
        """The token indices where `mask` (n,) holds, among the watched, ascending."""
        if self.watch is None:
            return np.flatnonzero(mask)
        return self._w[mask[self._w]]

    def start(self, view: MarketView, traits: np.random.Generator) -> None:
        """Once, before the first step (the view holds the prior signal): draw this
        investor's own parameter values from `traits`, its own stream. Default: nothing."""

    def observe_round(self, view: MarketView, rng: np.random.Generator) -> None:
        """A round was just published (`view.last_shares`, `view.last_budget`): update
        private state. Called for every investor every round, acting or not; `rng` is the
        investor's signal stream. Default: nothing."""

    def pop_events(self) -> list[tuple[str, int, str]]:
        """The `pending_events` so far, emptied by the call."""
        events, self.pending_events = self.pending_events, []
        return events

    def _event(self, kind: str, token: int, text: str) -> None:
        """Record an event of `kind` (one the class declares in `events`) about token
        index `token`; the investor passes it on to the model after this decision."""
        if kind not in self.events:
            raise ValueError(f"strategy {self.name!r} ({type(self).__qualname__}) records "
                             f"an event of kind {kind!r} but declares only {self.events}: "
                             f"add it to the class's `events`")
        self.pending_events.append((kind, token, text))

    @abstractmethod
    def decide(
        self, view: MarketView, cash: float, holdings: np.ndarray, rng: np.random.Generator
    ) -> list[Order]:
        """Orders for this step. `cash` in USD, `holdings` (n,) in tokens."""

    def orders(self, view: MarketView, cash_units: int, held: Mapping[int, int],
               rng: np.random.Generator) -> list[Order]:
        """The orders `decide` gives, from the investor's cash (base units) and `held`, its
        non-zero token balances by token index (base units; a token it does not hold is
        absent): the fast path (module docstring). Default: `decide` on the whole holdings
        vector."""
        holdings = np.array([held.get(j, 0) / ONE for j in range(view.n)])
        return self.decide(view, cash_units / ONE, holdings, rng)


def _plan_orders(buy: int, buy_fraction: float, sells: list[int], sell_fraction: float | None,
                 cash_units: int, held: Mapping[int, int]) -> list[Order]:
    """Orders from a plan shared by a group: buy `buy_fraction` of the cash of token `buy`
    (-1: none), sell `sell_fraction` (None: all) of every holding among `sells` (in token
    order, as `decide`'s `flatnonzero`). Sizes are computed exactly as the `decide` paths do
    (cash or holdings in display units first)."""
    # Orders made as `tuple.__new__(Order, ...)`: the named tuple without its Python-level
    # `__new__` (thousands per step).
    orders = [_order(Order, (buy, "buy", cash_units / ONE * buy_fraction))] \
        if buy >= 0 and cash_units > 0 else []
    if held:
        for j in sells:
            if j in held:
                size = held[j] / ONE
                orders.append(_order(Order, (j, "sell", size if sell_fraction is None
                                             else size * sell_fraction)))
    return orders


_order = tuple.__new__


def _trade_fraction(default: float) -> float:
    return param(default, "share of cash spent per buy (or of holdings sold per sale)",
                 unit="fraction", ge=0, le=1)


class Fundamental(Strategy):
    """Buys tokens priced below the value the remaining rewards pay holders; sells above.

    Value per token comes from the investor's private belief of each client's reward share
    (share x budget x the rounds it expects still to come, haircut by `discount`, spread over
    the supply the policy pays; `MarketView.token_values`). Each round it observes the
    published shares through its own noise (standard deviation `signal_noise` in share units,
    scaled per investor by a log-normal factor of sigma `noise_dispersion`) and moves its
    belief towards what it saw by `learning_rate`. `margin` is the mispricing it needs before
    acting (a band that absorbs fees). The horizon is a belief (by default the market's,
    `market.round_continuation`), never the run's length, which no trader can know.
    `discount`, `learning_rate` and `horizon` may be ranges: each investor draws its own.
    With the defaults every investor holds the public signal (docs/model.md, section 7.9).
    """

    name = "fundamental"
    follows_watchlist = True

    class Params(_Params):
        margin: float = param(0.1, "mispricing (value / price - 1) needed before trading",
                              unit="fraction", ge=0, le=10)
        discount: spread(0, 1) = param(  # type: ignore[valid-type]
            0.8, "haircut on the rewards still to come (risk, time); a range: each investor "
            "draws its own", unit="fraction")
        trade_fraction: float = _trade_fraction(0.5)
        signal_noise: float = param(
            0.0, "standard deviation of the noise on each round share it observes (0: it "
            "sees the published shares)", unit="share", ge=0, le=1)
        noise_dispersion: float = param(
            0.0, "log-normal sigma of signal_noise across the group: an investor's noise is "
            "signal_noise x exp(sigma Z), Z standard normal (0: all the same)", ge=0, le=3)
        learning_rate: spread(0, 1) = param(  # type: ignore[valid-type]
            0.3, "weight of a round's observed shares in its belief (0.3: the public "
            "signal's); a range: each investor draws its own", unit="fraction")
        horizon: spread(0, 100_000) | None = param(  # type: ignore[valid-type]
            None, "rounds it expects still to come; null: the market's belief, p / (1 - p) "
            "for market.round_continuation p; a range: each investor draws its own",
            unit="rounds")

    def start(self, view, traits):
        # Always the same four draws, whatever is fixed and whatever varies, so that making
        # one parameter a range (a sweep) leaves every other draw where it was.
        p = self.params
        u_discount, u_rate, u_horizon = traits.random(3)
        z_noise = traits.standard_normal()
        #: This investor's own values (the group's numbers, or draws from its ranges).
        self.discount = spread_value(p.discount, u_discount)
        self.learning_rate = spread_value(p.learning_rate, u_rate)
        self.horizon = (view.expected_rounds_left if p.horizon is None
                        else spread_value(p.horizon, u_horizon))
        self.noise_sd = p.signal_noise * float(np.exp(p.noise_dispersion * z_noise))
        #: Its belief of each client's reward share: the prior, then its own average; (n,),
        #: or (w,) over its watched tokens (in `watch` order) with a watchlist.
        if self.watch is None:
            self.belief = view.share_signal.copy()
            self._crowd = view.groups.setdefault(("fundamental", id(p)), _Crowd(p))
        else:
            self.belief = view.share_signal[self._w]
            self._crowd = view.groups.setdefault(("fundamental", id(p), "watch"),
                                                 _WatchCrowd(p))
        self._row = self._crowd.join(self)

    def observe_round(self, view, rng):
        shares = view.last_shares
        if self.noise_sd > 0:
            # n draws every round whatever the shares (docs/model.md, section 4.9). Negative
            # readings are clipped and the readings rescaled to the round's total, which is
            # public (the budget paid): what the investor cannot see is how it was split.
            seen = np.clip(shares + self.noise_sd * rng.standard_normal(view.n), 0.0, None)
            total, got = float(shares.sum()), float(seen.sum())
            seen = seen * (total / got) if got > 0 else np.full(view.n, total / view.n)
        else:
            seen = shares
        if self.watch is not None:
            # It reads the whole publication and keeps what it follows: elementwise, the
            # same floats as on all n.
            seen = seen[self._w]
        rate = self.learning_rate
        self.belief = (1 - rate) * self.belief + rate * seen
        self._crowd.beliefs_changed()

    def decide(self, view, cash, holdings, rng):
        p = self.params
        flows = self.belief * view.last_budget * self.horizon * self.discount
        if self.watch is None:
            gap = view.token_values(flows) / view.prices - 1.0
            token = range(view.n)
        else:  # its belief, hence its gaps, are of its watched tokens only (w,)
            gap = view.token_values_at(self._w, flows) / view.prices[self._w] - 1.0
            holdings, token = holdings[self._w], self.watch
        orders = []
        i = int(np.argmax(gap))
        if gap[i] > p.margin and cash > 0:
            orders.append(Order(token[i], "buy", cash * p.trade_fraction))
        for j in np.flatnonzero((gap < -p.margin) & (holdings > 0)):
            orders.append(Order(token[int(j)], "sell", holdings[j] * p.trade_fraction))
        return orders

    def orders(self, view, cash_units, held, rng):
        p = self.params
        margin = p.margin
        if self.watch is None:
            gap = self._crowd.gaps(view)[:, self._row].tolist()
            token, pos = range(view.n), None
        else:
            gap = self._crowd.gaps_of(view, self._row)
            token, pos = self.watch, self._pos
        buy = -1
        if cash_units > 0:
            best = max(gap)
            # The first largest, as argmax.
            buy = token[gap.index(best)] if best > margin else -1
        if not held:
            sells = []
        elif pos is None:
            sells = [j for j in sorted(held) if gap[j] < -margin]
        else:
            sells = [j for j in sorted(held) if (k := pos.get(j)) is not None
                     and gap[k] < -margin]
        tf = p.trade_fraction
        return _plan_orders(buy, tf, sells, tf, cash_units, held)


class _Crowd:
    """The fundamental investors of one group, as arrays (tokens x investors): the rewards
    each expects (flows, from its belief, horizon and discount) and the gaps value / price - 1
    their decisions come from, kept current token by token: a trade moves one price, so only
    that token's row is recomputed (`MarketView.changes`; rows are tokens so that it is one
    contiguous row). Element by element these are the floats `Fundamental.decide` computes
    for one investor. The policy's `token_value` is elementwise, so it takes every investor's
    flows at once, or one token's flows with that token's market figures as scalars (a value
    that ignores the flows broadcasts).

    The caching (flows rebuilt when a round changed the beliefs or the budget, gaps when a
    price moved) is written here once; a layout (`_WatchCrowd`) overrides how flows are laid
    out (`_build_flows`) and how gaps are computed, all at once (`_all_gaps`) or for one
    token (`_token_gaps`)."""

    def __init__(self, params: Fundamental.Params) -> None:
        self.params = params
        self.members: list[Fundamental] = []
        self._gaps = self._flows = None
        self._mark: tuple[int, int] | None = None
        self._flows_key: tuple[int, float] | None = None
        self._version = -1

    def join(self, member: Fundamental) -> int:
        self.members.append(member)
        self._flows = None
        return len(self.members) - 1

    def beliefs_changed(self) -> None:
        self._flows = None

    def flows(self, view: MarketView) -> np.ndarray:
        """USD still to come to each client as each investor expects it (`_build_flows`);
        rebuilt when a round changed the beliefs or the budget."""
        key = (view.rounds_done, view.last_budget)
        if self._flows is None or self._flows_key != key:
            self._flows = self._build_flows(view)
            self._flows_key = key
            self._mark = None
        return self._flows

    def gaps(self, view: MarketView) -> np.ndarray:
        """value / price - 1 at the live prices (`_all_gaps`), recomputed only for the tokens
        whose price moved since the last call."""
        if self._version == view.version and self._flows is not None:
            return self._gaps
        self._version = view.version
        flows = self.flows(view)
        self._mark, changed = view.changes(self._mark)
        if changed is None:
            self._gaps = self._all_gaps(view, flows)
        else:
            for j in set(changed):
                self._token_gaps(view, j, flows)
        return self._gaps

    def _build_flows(self, view: MarketView) -> np.ndarray:
        """(k, n): row by row, Fundamental.decide's belief x budget x horizon x discount."""
        m = self.members
        beliefs = np.array([x.belief for x in m])
        horizon = np.array([x.horizon for x in m])[:, None]
        discount = np.array([x.discount for x in m])[:, None]
        flows = beliefs * view.last_budget * horizon * discount
        self._flows_by_token = np.ascontiguousarray(flows.T)
        return flows

    def _all_gaps(self, view: MarketView, flows: np.ndarray) -> np.ndarray:
        """(n, k). A copy, always: with one investor the transposed broadcast is contiguous
        already, and `ascontiguousarray` would keep the read-only broadcast view."""
        return np.array(np.broadcast_to(
            view.token_values(flows) / view.prices - 1.0, flows.shape).T, order="C")

    def _token_gaps(self, view: MarketView, j: int, flows: np.ndarray) -> None:
        # numpy scalars: the same float64 operations as on the whole arrays.
        p, o = view.prices[j], view.pooled[j]
        self._gaps[j] = view.policy.token_value(o * p, view.supply[j], o, p,
                                                self._flows_by_token[j]) / p - 1.0


class _WatchCrowd(_Crowd):
    """`_Crowd` for fundamental investors that follow watchlists: one entry per (investor,
    watched token) pair instead of a tokens x investors array, so that its memory and the
    work of a step are the watchlists' sizes, not investors x tokens. The pairs lie investor
    by investor (each one's in its `watch` order: `gaps_of` is a slice); `_pairs[j]` are the
    entries of token j, which a trade of j recomputes. Element by element the floats are
    those `Fundamental.decide` computes for one investor (the policy's `token_value` is
    elementwise)."""

    def __init__(self, params: Fundamental.Params) -> None:
        super().__init__(params)
        self._tok: np.ndarray | None = None  # the token of each pair, (P,)

    def join(self, member: Fundamental) -> int:
        self._tok = None
        return super().join(member)

    def _layout(self, n: int) -> None:
        sizes = [len(x.watch) for x in self.members]
        #: Member i's pairs are `_starts[i]:_starts[i + 1]`.
        self._starts = [0, *np.cumsum(sizes).tolist()]
        self._sizes = sizes
        self._tok = np.concatenate([x._w for x in self.members])
        by_token = np.argsort(self._tok, kind="stable")
        ends = np.cumsum(np.bincount(self._tok, minlength=n))
        self._pairs = np.split(by_token, ends[:-1])

    def _build_flows(self, view: MarketView) -> np.ndarray:
        """(P,): pair by pair, Fundamental.decide's belief x budget x horizon x discount."""
        if self._tok is None:
            self._layout(view.n)
        m = self.members
        beliefs = np.concatenate([x.belief for x in m])
        horizon = np.repeat([x.horizon for x in m], self._sizes)
        discount = np.repeat([x.discount for x in m], self._sizes)
        return beliefs * view.last_budget * horizon * discount

    def _all_gaps(self, view: MarketView, flows: np.ndarray) -> np.ndarray:
        tok = self._tok
        return np.array(np.broadcast_to(
            view.token_values_at(tok, flows) / view.prices[tok] - 1.0, flows.shape))

    def _token_gaps(self, view: MarketView, j: int, flows: np.ndarray) -> None:
        pairs = self._pairs[j]
        if len(pairs):
            p, o = view.prices[j], view.pooled[j]
            self._gaps[pairs] = view.policy.token_value(o * p, view.supply[j], o, p,
                                                        flows[pairs]) / p - 1.0

    def gaps_of(self, view: MarketView, row: int) -> list[float]:
        """Member `row`'s gaps, in its `watch` order."""
        return self.gaps(view)[self._starts[row]:self._starts[row + 1]].tolist()


class Momentum(Strategy):
    """Buys the token that rose most over `lookback` steps; sells tokens that fell."""

    name = "momentum"
    follows_watchlist = True

    class Params(_Params):
        lookback: int = param(10, "steps over which the return is measured", unit="steps",
                              ge=1, le=1000)
        threshold: float = param(0.02, "return needed before buying (or, negative, selling)",
                                 unit="fraction", ge=0, le=10)
        trade_fraction: float = _trade_fraction(0.3)

    def decide(self, view, cash, holdings, rng):
        p = self.params
        if view.history_length <= p.lookback:
            return []
        ret = view.momentum(p.lookback)
        orders = []
        i = self._pick(ret, highest=True)
        if ret[i] > p.threshold and cash > 0:
            orders.append(Order(i, "buy", cash * p.trade_fraction))
        for j in self._watched((ret < -p.threshold) & (holdings > 0)):
            orders.append(Order(int(j), "sell", float(holdings[j])))
        return orders

    def start(self, view, traits):
        p = self.params
        self._chart = view.groups.setdefault(
            ("momentum", p.lookback, p.threshold),
            _Chart(lambda v: v.momentum(p.lookback), lambda v, j: v.momentum_at(p.lookback, j),
                   p.threshold, highest=True))

    def orders(self, view, cash_units, held, rng):
        p = self.params
        if view.history_length <= p.lookback:
            return []
        buy, sells = self._chart.plan(view, self.watch, self._pos, held)
        return _plan_orders(buy, p.trade_fraction, sells, None, cash_units, held)


class MeanReversion(Strategy):
    """Buys a token trading `band` below its `window`-step mean; sells when it is above."""

    name = "mean_reversion"
    follows_watchlist = True

    class Params(_Params):
        window: int = param(20, "steps in the moving average", unit="steps", ge=2, le=1000)
        band: float = param(0.05, "deviation from the average needed before trading",
                            unit="fraction", ge=0, le=10)
        trade_fraction: float = _trade_fraction(0.3)

    def decide(self, view, cash, holdings, rng):
        p = self.params
        if view.history_length < p.window:
            return []
        dev = view.deviation_from_mean(p.window)
        orders = []
        i = self._pick(dev, highest=False)
        if dev[i] < -p.band and cash > 0:
            orders.append(Order(i, "buy", cash * p.trade_fraction))
        for j in self._watched((dev > p.band) & (holdings > 0)):
            orders.append(Order(int(j), "sell", holdings[j] * p.trade_fraction))
        return orders

    def start(self, view, traits):
        p = self.params
        self._chart = view.groups.setdefault(
            ("mean_reversion", p.window, p.band),
            _Chart(lambda v: v.deviation_from_mean(p.window),
                   lambda v, j: v.deviation_at(p.window, j), p.band, highest=False))

    def orders(self, view, cash_units, held, rng):
        p = self.params
        if view.history_length < p.window:
            return []
        buy, sells = self._chart.plan(view, self.watch, self._pos, held)
        return _plan_orders(buy, p.trade_fraction, sells, p.trade_fraction, cash_units,
                            held)


class _Chart:
    """What every chartist with one signal and threshold does at the live prices: the token
    to buy (-1: none) and the tokens to sell, recomputed once per price state
    (`MarketView.version`) for the whole group. The signal values are kept as floats: all of
    them from `signal` (numpy, the very array `decide` reads) when a step or a round begins,
    then only the traded tokens' from `signal_at` (the same float operations on one token:
    a token's signal depends on its own price only). The choice is made in plain Python over
    the n values: the first largest (momentum) or smallest (mean reversion), exactly as
    `decide`'s argmax / argmin and comparisons on the same floats. An investor with a
    watchlist chooses on its own over its watched tokens' values (`plan` with `watch`), in
    O(watched + held) per decision instead of the group's O(n) per price state."""

    __slots__ = ("buy", "highest", "mark", "seen", "sells", "signal", "signal_at",
                 "threshold", "values", "version")

    def __init__(self, signal: Callable[[MarketView], np.ndarray],
                 signal_at: Callable[[MarketView, int], float], threshold: float,
                 highest: bool) -> None:
        self.signal, self.signal_at = signal, signal_at
        self.threshold, self.highest = threshold, highest
        self.version = self.seen = -1
        self.mark: tuple[int, int] | None = None
        self.values: list[float] = []
        self.buy, self.sells = -1, []

    def refresh(self, view: MarketView) -> list[float]:
        """The signal of every token at the live prices (n floats), brought up to date."""
        if self.seen != view.version:
            self.mark, changed = view.changes(self.mark)
            if changed is None:
                self.values = self.signal(view).tolist()
            else:
                values = self.values
                for j in set(changed):
                    values[j] = self.signal_at(view, j)
            self.seen = view.version
        return self.values

    def plan(self, view: MarketView, watch: list[int] | None = None,
             pos: Mapping[int, int] | None = None,
             held: Mapping[int, int] | None = None) -> tuple[int, list[int]]:
        """The token to buy (-1: none) and the tokens to sell: the group's (every token),
        or, with `watch` (ascending token indices, `pos` their positions), one investor's
        among its watched tokens, its sales among its holdings `held` only."""
        if watch is not None:
            return self._plan_watched(view, watch, pos, held)
        if self.version != view.version:
            values = self.refresh(view)
            t = self.threshold
            if self.highest:
                best = max(values)
                self.buy = values.index(best) if best > t else -1
                self.sells = [j for j, v in enumerate(values) if v < -t]
            else:
                best = min(values)
                self.buy = values.index(best) if best < -t else -1
                self.sells = [j for j, v in enumerate(values) if v > t]
            self.version = view.version
        return self.buy, self.sells

    def _plan_watched(self, view: MarketView, watch: list[int], pos: Mapping[int, int],
                      held: Mapping[int, int]) -> tuple[int, list[int]]:
        values = self.refresh(view)
        mine = [values[j] for j in watch]
        t = self.threshold
        if self.highest:
            best = max(mine)
            buy = watch[mine.index(best)] if best > t else -1
            sells = [j for j in sorted(held) if j in pos and values[j] < -t] if held else []
        else:
            best = min(mine)
            buy = watch[mine.index(best)] if best < -t else -1
            sells = [j for j in sorted(held) if j in pos and values[j] > t] if held else []
        return buy, sells


class Noise(Strategy):
    """Trades a random token in a random direction with probability `p_trade` per step."""

    name = "noise"
    follows_watchlist = True
    draws = True

    class Params(_Params):
        p_trade: float = param(0.2, "probability of trading in a step", unit="probability",
                               ge=0, le=1)
        trade_fraction: float = _trade_fraction(0.1)

    def decide(self, view, cash, holdings, rng):
        # Always four draws per step, whatever happens next: the number of draws must not
        # depend on holdings or prices, or a run and its counterfactual twin would drift
        # apart in their random numbers (docs/model.md, section 4.9 (Stochasticity)).
        p = self.params
        u_trade, u_token, u_side, u_size = rng.random(4)
        if u_trade >= p.p_trade:
            return []
        i = self._random_token(u_token, view)
        if u_side < 0.5 or holdings[i] <= 0:
            return [Order(i, "buy", cash * p.trade_fraction)] if cash > 0 else []
        return [Order(i, "sell", holdings[i] * (0.1 + 0.9 * u_size))]

    def orders(self, view, cash_units, held, rng):
        # The same four uniforms per step, taken from blocks drawn ahead from the same
        # stream (identical numbers: a generator fills a block in order), and only the one
        # balance the decision reads.
        p = self.params
        u_trade, u_token, u_side, u_size = self._draws(rng)
        if u_trade >= p.p_trade:
            return []
        i = self._random_token(u_token, view)
        have = held.get(i, 0)
        if u_side < 0.5 or have <= 0:
            return [Order(i, "buy", cash_units / ONE * p.trade_fraction)] if cash_units > 0 \
                else []
        return [Order(i, "sell", have / ONE * (0.1 + 0.9 * u_size))]

    def _random_token(self, u: float, view: MarketView) -> int:
        """The token a uniform `u` picks, uniformly among the watched tokens."""
        watch = self.watch
        if watch is None:
            return min(int(u * view.n), view.n - 1)
        return watch[min(int(u * len(watch)), len(watch) - 1)]

    #: Steps of draws taken ahead at once.
    _BLOCK = 256

    def __init__(self, params=None, /, **values) -> None:
        super().__init__(params, **values)
        self._block: list[list[float]] = []
        self._next = 0

    def _draws(self, rng: np.random.Generator) -> list[float]:
        if self._next == len(self._block):
            self._block = rng.random((self._BLOCK, 4)).tolist()
            self._next = 0
        self._next += 1
        return self._block[self._next - 1]


class Manipulator(Strategy):
    """Pump and dump: buys token `target` for `pump_steps` steps from `pump_start`, then
    sells everything at `dump_step` into the crowd it attracted (momentum traders).

    `target` is a client index; -1 picks the token with the lowest contribution signal at
    the start of the pump (a cheap token is the easiest to move).
    """

    name = "manipulator"
    events = ("pump_start", "pump_end", "dump")

    class Params(_Params):
        target: int = param(-1, "client index to pump; -1: the lowest contribution signal",
                            ge=-1, le=10_000)
        pump_start: int = param(50, "first step of the pump", unit="step", ge=1, le=10**6)
        pump_steps: int = param(20, "length of the pump", unit="steps", ge=1, le=10**6)
        dump_step: int = param(100, "step at which it sells everything", unit="step", ge=1,
                               le=10**6)
        trade_fraction: float = _trade_fraction(0.2)

        @model_validator(mode="after")
        def _dump_after_pump(self):
            if self.dump_step < self.pump_start + self.pump_steps:
                raise ValueError(
                    f"dump_step ({self.dump_step}) must come after the pump ends "
                    f"(pump_start + pump_steps = {self.pump_start + self.pump_steps})"
                )
            return self

    @classmethod
    def check_in(cls, params, scenario):
        if params.target >= scenario.n_clients:
            return (f"target {params.target} names no client: the clients are 0 to "
                    f"{scenario.n_clients - 1} (or -1 for the lowest signal)")
        return None

    def __init__(self, params=None, /, **values) -> None:
        super().__init__(params, **values)
        self._chosen: int | None = None
        self._pumping = self._dumped = False

    def decide(self, view, cash, holdings, rng):
        # Records pump_start, pump_end and dump events (events.parquet) the first step it
        # acts in each phase.
        p = self.params
        if self._chosen is None and view.step >= p.pump_start:
            if p.target >= view.n:
                raise ValueError(f"target {p.target} but there are {view.n} tokens")
            self._chosen = int(np.argmin(view.share_signal)) if p.target < 0 else p.target
            self._pumping = True
            self._event("pump_start", self._chosen,
                        f"pump of {view.tokens[self._chosen]} starts")
        t = self._chosen
        if t is None:
            return []
        end = p.pump_start + p.pump_steps
        if self._pumping and view.step >= end:
            self._pumping = False
            self._event("pump_end", t, f"pump of {view.tokens[t]} ends (step {end})")
        if view.step < end and cash > 0:
            return [Order(t, "buy", cash * p.trade_fraction)]
        if view.step >= p.dump_step and holdings[t] > 0:
            if not self._dumped:
                self._dumped = True
                self._event("dump", t, f"dump of {view.tokens[t]}: sells "
                                       f"{holdings[t]:,.0f} tokens")
            return [Order(t, "sell", float(holdings[t]))]
        return []
