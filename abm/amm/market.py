"""The market: one pool per client token, all paired with the same base currency, all in one
ledger; prices, mark-to-market values and realisable (liquidation) values for agents and run
tables.

Two valuations of one account, both exact integers in base units:

- `value` marks every token and LP share at the pool's spot price: what the position would be
  worth if it could be sold without moving the price;
- `liquidation_value` is what the account would actually hold in base currency after selling
  everything alone, pool by pool, with fees and price impact: what it could take home.

For any account `liquidation_value <= value` (a constant-product sale never fills at or above
spot, and the fee only lowers it further).

Sales alone do not add up: each one assumes nobody else sells. `joint_liquidation` values a set
of accounts selling everything at once, every pool's proceeds shared among them pro rata, so
that the values of any partition of the set (holder types, the whole economy) add up exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from abm.amm.ledger import Ledger
from abm.amm.math import BASE, BPS, DEFAULT_FEE_BPS, check_fee_bps, get_amount_out
from abm.amm.pool import Pool


class Marks(NamedTuple):
    """Valuations of a list of accounts, one exact int per account (base units), in the
    order the accounts were given: `usd` (base currency held), `tokens` and `lp` (marked at
    spot, as `Market.value_breakdown`) and `if_sold` (`Market.liquidation_value`)."""

    usd: list[int]
    tokens: list[int]
    lp: list[int]
    if_sold: list[int]


class JointLiquidation(NamedTuple):
    """`Market.joint_liquidation`'s result, base units: `values` per account (what each
    takes home when every listed account sells at once) and `left_in_pools` (the USD the
    pools keep: the locked minimum liquidity's part and rounding dust). For every pool's
    USD, proceeds + redeemed + left = its reserve, exactly."""

    values: dict[str, int]
    left_in_pools: int


def pro_rata(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split `total` base units by integer `weights`, exactly: floors, then the remainder one
    unit each to the largest fractional parts (ties by key, so the split never depends on
    the order of `weights`). Sums to `total` when any weight is positive; all 0 otherwise."""
    whole = sum(weights.values())
    if whole <= 0 or total <= 0:
        return dict.fromkeys(weights, 0)
    out, rest = {}, []
    for key, w in weights.items():
        q, r = divmod(total * w, whole)
        out[key] = q
        rest.append((-r, key))
    for _, key in sorted(rest)[: total - sum(out.values())]:
        out[key] += 1
    return out


def _held_by(book: Mapping[str, int], accounts: Mapping[str, None]) -> dict[str, int]:
    """The positive balances in `book` (account -> base units) of the `accounts`, read from
    whichever of the two is smaller."""
    if len(book) <= len(accounts):
        return {a: n for a, n in book.items() if n > 0 and a in accounts}
    return {a: n for a in accounts if (n := book.get(a, 0)) > 0}


class Market:
    """Pools of `token/base` in `ledger`, keyed by token; `fee_bps` is the default fee."""

    def __init__(self, ledger: Ledger, base: str = BASE, fee_bps: int = DEFAULT_FEE_BPS) -> None:
        self.ledger = ledger
        self.base = base
        self.fee_bps = check_fee_bps(fee_bps)
        self.pools: dict[str, Pool] = {}

    def __repr__(self) -> str:
        return f"Market({self.base}, pools={list(self.pools)})"

    def create_pool(self, token: str, fee_bps: int | None = None) -> Pool:
        """A new, empty `token/base` pool (seed it with `add_liquidity`)."""
        if token in self.pools:
            raise ValueError(f"a pool for {token!r} already exists")
        pool = Pool(self.ledger, token, self.base, self.fee_bps if fee_bps is None else fee_bps)
        self.pools[token] = pool
        return pool

    def price(self, token: str) -> float:
        """Spot price of `token` in base per token (display units)."""
        return self.pools[token].spot_price()

    def value(self, account: str) -> int:
        """Everything `account` holds, marked to market at spot, in base units."""
        return sum(self.value_breakdown(account).values())

    def liquidation_value(self, account: str) -> int:
        """Base units `account` would hold after selling everything alone, each pool on its own.

        Per pool: its LP shares are burned first, pro rata and rounding down exactly as
        `Pool.remove_liquidity` pays out (`shares * reserve // total_shares`); then its whole
        balance of that pool's token, including what the burn returned, is sold into the
        pool's reserves after the burn with the pool's fee (`get_amount_out`, rounding down).
        Shares too few to pay out a base unit of each reserve cannot be burned (the pool
        refuses) and count 0. Plus the base currency it holds. Pools are independent (each
        sale moves only its own pool), so the order of pools does not matter. Nothing in the
        ledger changes. A pool whose reserves are empty buys nothing (its tokens count 0).
        """
        return self.group_liquidation_value([account])

    def liquidation_values(self, accounts: Sequence[str]) -> list[int]:
        """`liquidation_value` of each of `accounts` (distinct), in their order, by whichever
        of two exact paths reads less: one account at a time (each a pass over the assets),
        or one pass over every holding (`mark_accounts`). Equal either way (tested); the
        second wins when there are many accounts and many pools (cross-device scale)."""
        if len(accounts) * len(self.ledger.assets()) <= self.ledger.holdings():
            return [self.liquidation_value(account) for account in accounts]
        return self.mark_accounts(accounts).if_sold

    def group_liquidation_value(self, accounts: Iterable[str]) -> int:
        """Base units `accounts` would hold together after selling everything at once: per
        pool, their LP shares burned together and their tokens sold in one sale (the same
        rules as `liquidation_value`, which is the group of one).

        A group's sale moves the price against all of its members, so this is at most the
        sum of their `liquidation_value`s: each one's sale alone is not additive.
        """
        held: dict[str, int] = {}
        for account in set(accounts):
            for asset, amount in self.ledger.balances(account).items():
                held[asset] = held.get(asset, 0) + amount
        total = held.get(self.base, 0)
        for token, pool in self.pools.items():
            amount, shares = held.get(token, 0), held.get(pool.lp_asset, 0)
            if not amount and not shares:
                continue
            reserve_token, reserve_base = pool.reserves
            if shares:
                supply = pool.total_shares
                token_out = shares * reserve_token // supply
                base_out = shares * reserve_base // supply
                if not token_out or not base_out:
                    # The pool refuses such a burn (InsufficientLiquidity): dust shares
                    # cannot be redeemed, so they fetch nothing.
                    token_out = base_out = 0
                reserve_token -= token_out
                reserve_base -= base_out
                amount += token_out
                total += base_out
            if amount and reserve_token and reserve_base:
                total += get_amount_out(amount, reserve_token, reserve_base, pool.fee_bps)
        return total

    def joint_liquidation(self, accounts: Iterable[str]) -> JointLiquidation:
        """What `accounts` take home when every one of them sells everything at once.

        Per pool, in this order: (1) all their tokens are sold in one sale into the pool's
        reserves (`get_amount_out`, with the fee), the USD shared pro rata by tokens sold;
        (2) all their LP shares are redeemed together, the USD side (`shares * reserve //
        total_shares`, at the reserves after the sale) shared pro rata by shares; the tokens
        a redemption returns count 0, since every holder has sold and no buyer is left
        outside the pool. Shares the pool would refuse to burn at those reserves (too few to
        pay out a base unit of each) fetch nothing, as in `liquidation_value`. Plus the USD
        each holds. The order is the market's: sellers are filled by the pool, whose owners
        bear the sale. Shares are split with `pro_rata`, so the values add up exactly:
        sum(values) + left_in_pools = USD held by the accounts + every pool's USD reserve
        that they could claim (docs/model.md, section 4.11).
        Nothing in the ledger changes.
        """
        wanted = dict.fromkeys(accounts)  # distinct, in order
        live = self.ledger.live
        usd = live(self.base)
        values = {a: usd.get(a, 0) for a in wanted}
        left = 0
        for token, pool in self.pools.items():
            reserve_token, reserve_base = pool.reserves
            # Each book read from whichever side is smaller, the holders or the accounts: at
            # a thousand pools most accounts hold none of a pool (`pro_rata` does not depend
            # on the order of its weights).
            sold = _held_by(live(token), wanted)
            total = sum(sold.values())
            if total and reserve_token and reserve_base:
                proceeds = get_amount_out(total, reserve_token, reserve_base, pool.fee_bps)
                for a, usd in pro_rata(proceeds, sold).items():
                    values[a] += usd
                reserve_token += total
                reserve_base -= proceeds
            supply = pool.total_shares
            # Each holder burns its own shares: the pool refuses a burn that pays out no base
            # unit of a reserve (as in `liquidation_value`), so such dust stays in the pool.
            shares = {a: n for a, n in _held_by(live(pool.lp_asset), wanted).items()
                      if n * reserve_token // supply and n * reserve_base // supply}
            redeemed = 0
            if shares:
                redeemed = sum(shares.values()) * reserve_base // pool.total_shares
                for a, usd in pro_rata(redeemed, shares).items():
                    values[a] += usd
            left += reserve_base - redeemed
        return JointLiquidation(values, left)

    def value_breakdown(self, account: str) -> dict[str, int]:
        """`{"usd": base held, "tokens": tokens at spot, "lp": LP shares at spot}`, base units,
        each rounded down.

        A token is worth `balance * reserve_base // reserve_token`. An LP share is worth its part
        of both reserves with the token reserve at spot, i.e. `2 * reserve_base / S` each. Assets
        without a pool, and tokens of a pool without liquidity, count 0.
        """
        held = self.ledger.balances(account)
        tokens = lp = 0
        for token, pool in self.pools.items():
            amount, shares = held.get(token, 0), held.get(pool.lp_asset, 0)
            if not amount and not shares:
                continue
            reserve_token, reserve_base = pool.reserves
            if not reserve_token or not reserve_base:
                continue
            tokens += amount * reserve_base // reserve_token
            if shares:
                lp += 2 * shares * reserve_base // pool.total_shares
        return {"usd": held.get(self.base, 0), "tokens": tokens, "lp": lp}

    def mark_accounts(self, accounts: Sequence[str]) -> Marks:
        """`value_breakdown` and `liquidation_value` of every account in `accounts` in one
        pass over the ledger, exact and equal to calling both per account (tested).

        The work is per holding (an account's non-zero balance of one asset), read from each
        asset's book, not per account and pool: an account holding two tokens costs two
        entries, whatever the number of pools. Holders not in `accounts` (pools, the locked
        minimum liquidity) are skipped. Accounts must be distinct.
        """
        row = {account: i for i, account in enumerate(accounts)}
        if len(row) != len(accounts):
            raise ValueError("mark_accounts: accounts must be distinct")
        n = len(accounts)
        usd, tokens, lp, if_sold = [0] * n, [0] * n, [0] * n, [0] * n
        ledger, at = self.ledger, row.get
        # The live books (read only here): copying each one per step cost more than the
        # arithmetic of a small market.
        for account, amount in ledger.live(self.base).items():
            i = at(account)
            if i is not None:
                usd[i] = if_sold[i] = amount
        for token, pool in self.pools.items():
            held = ledger.live(token)
            shares = {account: amount for account, amount in ledger.live(pool.lp_asset).items()
                      if account in row}
            reserve_token, reserve_base = pool.reserves
            if not reserve_token or not reserve_base:
                continue  # nothing to mark against, nothing to sell into (both count 0)
            fee_kept = BPS - pool.fee_bps
            scaled_reserve = reserve_token * BPS
            # Token holders without shares: mark at spot, and sell into the reserves
            # (get_amount_out, inlined: its checks hold here, all positive ints).
            for account, amount in held.items():
                i = at(account)
                if i is None:
                    continue
                tokens[i] += amount * reserve_base // reserve_token
                if account not in shares:
                    with_fee = amount * fee_kept
                    if_sold[i] += with_fee * reserve_base // (scaled_reserve + with_fee)
            # Holders of shares: burn them first (as group_liquidation_value for a group of
            # one), then sell every token, held plus burned out, into what the burn left.
            supply = pool.total_shares
            for account, owned in shares.items():
                i = row[account]
                v, sold = _burn_and_sell(held.get(account, 0), owned, reserve_token,
                                         reserve_base, supply, fee_kept)
                lp[i] += v
                if_sold[i] += sold
        return Marks(usd, tokens, lp, if_sold)


class _PoolMark(NamedTuple):
    """What `MarkBook` keeps of one pool since its last mark: the inputs (`state`: reserves,
    total shares; copies of its token and LP books, None after a plain pass) and, per row of
    a marked account that holds either, its contribution `(tokens, lp, if_sold)` in base
    units."""

    state: tuple[int, int, int]
    held: dict[str, int] | None
    shares: dict[str, int] | None
    parts: dict[int, tuple[int, int, int]]


class MarkBook:
    """`Market.mark_accounts(accounts)` kept up to date from one mark to the next, exact:
    equal to it after any sequence of swaps, liquidity changes, mints, burns and transfers
    (tested against it, `tests/test_liquidation.py`).

    An account's marks are sums over pools of a contribution that depends only on its
    balances of the pool's token and LP asset and on the pool's reserves and total shares.
    Each `mark` compares those inputs with what the previous one saw (a pool's state, then
    its two books, compared as dicts: C-speed, no arithmetic) and recomputes only what
    changed: every holder of a pool whose reserves or supply moved, only the holders whose
    balances changed in a pool that did not trade, nothing for a pool untouched; the sums
    per account follow by exact int differences. The work of a step is then that of the
    pools that traded, not of every holding (cross-device scale: a liquidity provider holds
    shares of every pool, few pools trade in a step). When most holdings changed anyway
    (a few pools, all trading), it makes one plain pass (`Market.mark_accounts`) and keeps
    only the pools' states; the contributions are rebuilt, all at once, at the next mark
    where few pools traded. `accounts` must be distinct; the ledger is only read.
    """

    #: Share of the holdings changed above which a mark is one plain pass (no
    #: contributions kept, no differences subtracted).
    FULL_ABOVE = 0.6

    def __init__(self, market: Market, accounts: Sequence[str]) -> None:
        self.market = market
        self.accounts = list(accounts)
        self._row = {account: i for i, account in enumerate(self.accounts)}
        if len(self._row) != len(self.accounts):
            raise ValueError("MarkBook: accounts must be distinct")
        n = len(self.accounts)
        self._tokens, self._lp, self._sold = [0] * n, [0] * n, [0] * n
        self._pools: dict[str, _PoolMark] = {}
        self._layout: list[tuple[str, Pool, dict[str, int], dict[str, int], str, str]] = []
        #: Whether `_tokens`, `_lp`, `_sold` and every pool's `parts` hold the sums and
        #: contributions of the latest mark (after a plain pass they do not).
        self._summed = False
        #: Holdings recomputed by the latest `mark` (what it cost; for tests and benches).
        self.recomputed = 0

    def mark(self) -> Marks:
        """The marks of `accounts` now, as `Market.mark_accounts` gives them (new lists)."""
        market, ledger, pools = self.market, self.market.ledger, self._pools
        if len(self._layout) != len(market.pools):
            # Each pool's live books (the ledger keeps one dict per asset for good) and the
            # ledger's supply counters of its shares: read per pool every mark.
            self._layout = [(token, pool, ledger._book(token), ledger._book(pool.lp_asset),
                             pool.address, pool.lp_asset)
                            for token, pool in market.pools.items()]
        usd_book, minted, burned = ledger._book(market.base), ledger._minted, ledger._burned
        stale: list[tuple[str, Pool, tuple[int, int, int], dict[str, int], dict[str, int]]]
        stale, total, changed = [], 0, 0
        for token, pool, held, shares, address, lp_asset in self._layout:
            size = len(held) + len(shares)
            total += size
            # (reserves, total_shares): `Pool.reserves` and `Ledger.supply`, read directly.
            state = (held.get(address, 0), usd_book.get(address, 0),
                     minted.get(lp_asset, 0) - burned.get(lp_asset, 0))
            last = pools.get(token)
            # After a plain pass only the states are kept (`held` None): the same state is
            # then taken as unchanged for the choice below, and `_mark_all` reads every book.
            if last is not None and last.state == state and (
                    last.held is None or (last.held == held and last.shares == shares)):
                continue
            stale.append((token, pool, state, held, shares))
            changed += size
        if stale and changed > self.FULL_ABOVE * total:
            # Most holdings changed: one plain pass (`mark_accounts`) is cheaper than
            # keeping contributions; only the inputs are kept, so that the next mark knows
            # what changed, and the contributions are rebuilt when few did.
            for token, _pool, state, _held, _shares in stale:
                pools[token] = _PoolMark(state, None, None, {})
            self._summed = False
            self.recomputed = total
            return market.mark_accounts(self.accounts)
        if not self._summed:
            self._mark_all()
        else:
            self.recomputed = 0
            for token, pool, state, held, shares in stale:
                self._update(token, pool, state, held, shares)
        usd = [0] * len(self.accounts)
        at = self._row.get
        for account, amount in ledger._book(market.base).items():
            i = at(account)
            if i is not None:
                usd[i] = amount
        return Marks(usd, self._tokens[:], self._lp[:],
                     [u + s for u, s in zip(usd, self._sold, strict=True)])

    def _mark_all(self) -> None:
        n = len(self.accounts)
        self._tokens, self._lp, self._sold = [0] * n, [0] * n, [0] * n
        ledger, self._pools, self.recomputed = self.market.ledger, {}, 0
        for token, pool in self.market.pools.items():
            held, shares = ledger._book(token), ledger._book(pool.lp_asset)
            state = (*pool.reserves, pool.total_shares)
            parts = self._add_parts(pool, state, held, shares)
            self._pools[token] = _PoolMark(state, dict(held), dict(shares), parts)
        self._summed = True

    def _update(self, token: str, pool: Pool, state: tuple[int, int, int],
                held: dict[str, int], shares: dict[str, int]) -> None:
        """Bring one pool's contributions up to date, adding the differences to the sums."""
        last = self._pools.get(token)
        tokens, lp, sold = self._tokens, self._lp, self._sold
        if last is None or last.state != state:
            if last is not None:
                for i, (t, v, s) in last.parts.items():
                    tokens[i] -= t
                    lp[i] -= v
                    sold[i] -= s
            parts = self._add_parts(pool, state, held, shares)
        else:  # no trade: only the holders whose balances of this pool changed
            at = self._row.get
            parts = dict(last.parts)
            for account in {a for a, _ in held.items() ^ last.held.items()} \
                    | {a for a, _ in shares.items() ^ last.shares.items()}:
                i = at(account)
                if i is None:
                    continue
                t, v, s = parts.pop(i, (0, 0, 0))
                part = _contribution(held.get(account, 0), shares.get(account, 0), state,
                                     pool.fee_bps)
                if part is not None:
                    parts[i] = part
                    t, v, s = t - part[0], v - part[1], s - part[2]
                tokens[i] -= t
                lp[i] -= v
                sold[i] -= s
                self.recomputed += 1
        self._pools[token] = _PoolMark(state, dict(held), dict(shares), parts)

    def _add_parts(self, pool: Pool, state: tuple[int, int, int], held: dict[str, int],
                   shares: dict[str, int]) -> dict[int, tuple[int, int, int]]:
        """Every marked holder's contribution in `pool` (`mark_accounts`' arithmetic for one
        pool: row -> (tokens, lp, if_sold), base units), each added to the sums."""
        reserve_token, reserve_base, supply = state
        parts: dict[int, tuple[int, int, int]] = {}
        if not reserve_token or not reserve_base:
            return parts  # nothing to mark against, nothing to sell into (both count 0)
        at = self._row.get
        tokens, lp, sold = self._tokens, self._lp, self._sold
        fee_kept = BPS - pool.fee_bps
        scaled_reserve = reserve_token * BPS
        for account, amount in held.items():
            i = at(account)
            if i is None or account in shares:
                continue
            with_fee = amount * fee_kept
            t = amount * reserve_base // reserve_token
            s = with_fee * reserve_base // (scaled_reserve + with_fee)
            parts[i] = (t, 0, s)
            tokens[i] += t
            sold[i] += s
        for account, owned in shares.items():
            i = at(account)
            if i is None:
                continue
            amount = held.get(account, 0)
            t = amount * reserve_base // reserve_token
            v, s = _burn_and_sell(amount, owned, reserve_token, reserve_base, supply, fee_kept)
            parts[i] = (t, v, s)
            tokens[i] += t
            lp[i] += v
            sold[i] += s
        self.recomputed += len(parts)
        return parts


def _contribution(amount: int, owned: int, state: tuple[int, int, int],
                  fee_bps: int) -> tuple[int, int, int] | None:
    """One account's `(tokens, lp, if_sold)` in one pool (base units) from its `amount` of
    the token and `owned` LP shares, as `Market.mark_accounts` computes them; None when it
    holds neither or the pool has no reserves (it counts 0)."""
    reserve_token, reserve_base, supply = state
    if (not amount and not owned) or not reserve_token or not reserve_base:
        return None
    tokens = amount * reserve_base // reserve_token
    fee_kept = BPS - fee_bps
    if not owned:
        with_fee = amount * fee_kept
        return tokens, 0, with_fee * reserve_base // (reserve_token * BPS + with_fee)
    lp, sold = _burn_and_sell(amount, owned, reserve_token, reserve_base, supply, fee_kept)
    return tokens, lp, sold


def _burn_and_sell(amount: int, owned: int, reserve_token: int, reserve_base: int,
                   supply: int, fee_kept: int) -> tuple[int, int]:
    """`(lp, if_sold)` of an account holding `owned` > 0 LP shares of `supply` and `amount`
    of the token, in a pool with those reserves (base units): its shares at spot (twice the
    base they redeem), and what it would get burning them first (as
    `group_liquidation_value` for a group of one), then selling every token, held plus
    burned out, into what the burn left. `fee_kept` is `BPS - fee_bps`."""
    lp = 2 * owned * reserve_base // supply
    sold, r_token, r_base = 0, reserve_token, reserve_base
    token_out = owned * reserve_token // supply
    base_out = owned * reserve_base // supply
    if token_out and base_out:  # else the pool refuses the burn: dust
        r_token -= token_out
        r_base -= base_out
        amount += token_out
        sold = base_out
    if amount and r_token and r_base:
        with_fee = amount * fee_kept
        sold += with_fee * r_base // (r_token * BPS + with_fee)
    return lp, sold
