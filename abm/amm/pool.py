"""A Uniswap V2 constant-product pool of (client token, base currency) living in a `Ledger`.

The pool owns no balances of its own: its reserves are the ledger balances of its account
`pool:<token>`, and its LP shares are the ledger asset `LP:<token>`. Like UniswapV2Pair, each
verb computes the whole outcome first, refuses (raising, with no balance changed) unless every
check passes, ends with an explicit invariant check on the outcome, and only then writes.
Rounding always favours the pool: swap outputs and withdrawals round down, swap inputs round up.

Semantics follow v2-core's UniswapV2Pair (mint, burn, swap) with v2-periphery's router on top
(optimal-ratio deposits, `*_min` / `max_in` slippage guards). The protocol fee (`feeTo`) and the
price oracle accumulators are left out: the simulator has no use for them.
"""

from __future__ import annotations

from math import isqrt
from typing import NoReturn

from abm.amm.ledger import InsufficientBalance, InvariantViolation, Ledger
from abm.amm.math import (
    BASE,
    BPS,
    DEFAULT_FEE_BPS,
    MINIMUM_LIQUIDITY,
    InsufficientInputAmount,
    InsufficientLiquidity,
    InsufficientOutputAmount,
    PoolError,
    SlippageError,
    check_amount,
    check_fee_bps,
    get_amount_in,
    get_amount_out,
    k_holds,
    quote,
)

ZERO_ADDRESS = "0x0"
"""The account that holds the MINIMUM_LIQUIDITY shares locked at each pool's first deposit
(UniswapV2Pair mints them to address(0)). Nobody can act for it."""


class Pool:
    """Constant-product pool `reserve_token * reserve_base = k` with a fee in basis points.

    Prices are in base per token; both assets have 18 decimals, so the ratio of base units is
    the display price. Cumulative counters (ints, base units): `n_swaps`, `volume_base` (the
    base side of every swap), `fees_base` and `fees_token` (`amount_in * fee_bps // BPS` of each
    swap, in its input asset; the fee stays in the reserves and accrues to the shares).
    """

    __slots__ = (
        "_legs",
        "_n",
        "address",
        "base",
        "fee_bps",
        "fees_base",
        "fees_token",
        "ledger",
        "lp_asset",
        "n_swaps",
        "token",
        "volume_base",
    )

    def __init__(
        self, ledger: Ledger, token: str, base: str = BASE, fee_bps: int = DEFAULT_FEE_BPS
    ) -> None:
        for name, value in (("token", token), ("base", base)):
            if type(value) is not str or not value:
                raise ValueError(f"{name} must be a non-empty str, got {value!r}")
        if token == base:
            raise ValueError(f"a pool needs two different assets, got token == base == {base!r}")
        self.ledger = ledger
        self.token = token
        self.base = base
        self.fee_bps = check_fee_bps(fee_bps)
        self._n = BPS - fee_bps  # the contract's 997: what of each input counts towards k
        self.address = f"pool:{token}"
        self.lp_asset = f"LP:{token}"
        tok, bas = ledger._book(token), ledger._book(base)
        # The ledger's live {account: balance} dicts of both assets, keyed by the asset sold:
        # asset_in -> (book of asset_in, book of asset_out, input is base). One dict lookup
        # routes a swap; the swap verbs read and settle balances in these books directly.
        self._legs = {token: (tok, bas, False), base: (bas, tok, True)}
        self.n_swaps = 0
        self.volume_base = 0
        self.fees_base = 0
        self.fees_token = 0

    def __repr__(self) -> str:
        rt, rb = self.reserves
        return (
            f"Pool({self.token}/{self.base}, reserves=({rt}, {rb}), "
            f"shares={self.total_shares}, fee_bps={self.fee_bps})"
        )

    # -- state -----------------------------------------------------------------------------

    @property
    def reserves(self) -> tuple[int, int]:
        """`(reserve_token, reserve_base)`: the pool account's ledger balances."""
        books = self._legs[self.token]
        return books[0].get(self.address, 0), books[1].get(self.address, 0)

    @property
    def total_shares(self) -> int:
        """LP shares outstanding, MINIMUM_LIQUIDITY locked ones included."""
        return self.ledger.supply(self.lp_asset)

    def _route(self, asset_in: str) -> tuple[int, int]:
        """`(reserve_in, reserve_out)` for selling `asset_in`; refuses unknown assets and an
        empty pool."""
        legs = self._legs.get(asset_in)
        if legs is None:
            raise PoolError(f"{self.address} trades {self.token} and {self.base}, not {asset_in!r}")
        r_in, r_out = legs[0].get(self.address, 0), legs[1].get(self.address, 0)
        if not r_in or not r_out:
            raise InsufficientLiquidity(f"{self.address} has no liquidity")
        return r_in, r_out

    def _other(self, asset: str) -> str:
        return self.base if asset == self.token else self.token

    # -- swaps -----------------------------------------------------------------------------

    def swap_exact_in(self, trader: str, asset_in: str, amount_in: int, min_out: int = 0) -> int:
        """Sell exactly `amount_in` of `asset_in`; return the amount of the other asset paid to
        `trader`. Refuses (`SlippageError`) if that is below `min_out`.

        The hot path of the simulation: plain ints and dict operations on the ledger's books,
        every check before the first write.
        """
        pool = self.address
        try:
            book_in, book_out, base_in = self._legs[asset_in]
            r_in = book_in[pool]  # a missing entry is a zero reserve: the pool is empty
            r_out = book_out[pool]
        except KeyError:
            self._refuse_swap(trader, asset_in, amount_in, "amount_in")
        if type(amount_in) is not int or amount_in <= 0 or trader == pool:
            self._refuse_swap(trader, asset_in, amount_in, "amount_in")
        have = book_in.get(trader, 0)
        if have < amount_in:
            raise InsufficientBalance(trader, asset_in, have, amount_in)
        x = amount_in * self._n
        d = r_in * BPS + x
        num = x * r_out
        amount_out = num // d  # getAmountOut, rounded down
        if amount_out < min_out or not amount_out:
            self._refuse_output(amount_out, min_out)
        # k_holds(r_in, r_out, new_in, new_out, amount_in, 0), the contract's K check, inlined
        # and rearranged without loss: its factor new_in*BPS - amount_in*fee_bps is exactly d,
        # so (d * new_out*BPS >= r_in*r_out*BPS**2) <=> (amount_out*d <= num). Same verdict,
        # three big products fewer on the hot path.
        if amount_out * d > num:
            raise InvariantViolation(f"{pool}: K would decrease")
        # Commit: the trader's debit (a zero balance is deleted), both reserves, the credit.
        if have == amount_in:
            del book_in[trader]
        else:
            book_in[trader] = have - amount_in
        book_in[pool] = r_in + amount_in
        book_out[pool] = r_out - amount_out
        book_out[trader] = book_out.get(trader, 0) + amount_out
        self.n_swaps += 1
        if base_in:
            self.volume_base += amount_in
            self.fees_base += amount_in * self.fee_bps // BPS
        else:
            self.volume_base += amount_out
            self.fees_token += amount_in * self.fee_bps // BPS
        return amount_out

    def swap_exact_out(
        self, trader: str, asset_out: str, amount_out: int, max_in: int | None = None
    ) -> int:
        """Buy exactly `amount_out` of `asset_out`; return the amount of the other asset taken
        from `trader` (getAmountIn, rounded up). Refuses (`SlippageError`) above `max_in`."""
        pool = self.address
        try:
            book_out, book_in, base_out = self._legs[asset_out]
            r_in = book_in[pool]
            r_out = book_out[pool]
        except KeyError:
            self._refuse_swap(trader, asset_out, amount_out, "amount_out")
        if type(amount_out) is not int or amount_out <= 0 or trader == pool:
            self._refuse_swap(trader, asset_out, amount_out, "amount_out")
        amount_in = get_amount_in(amount_out, r_in, r_out, self.fee_bps)
        if max_in is not None and amount_in > max_in:
            raise SlippageError(f"needs {amount_in} in, more than max_in {max_in}")
        have = book_in.get(trader, 0)
        if have < amount_in:
            raise InsufficientBalance(trader, self._other(asset_out), have, amount_in)
        new_in = r_in + amount_in
        new_out = r_out - amount_out
        if not k_holds(r_in, r_out, new_in, new_out, amount_in, 0, self.fee_bps):
            raise InvariantViolation(f"{pool}: K would decrease")
        if have == amount_in:
            del book_in[trader]
        else:
            book_in[trader] = have - amount_in
        book_in[pool] = new_in
        book_out[pool] = new_out
        book_out[trader] = book_out.get(trader, 0) + amount_out
        self.n_swaps += 1
        if base_out:
            self.volume_base += amount_out
            self.fees_token += amount_in * self.fee_bps // BPS
        else:
            self.volume_base += amount_in
            self.fees_base += amount_in * self.fee_bps // BPS
        return amount_in

    def _refuse_swap(self, trader: str, asset: str, amount: object, name: str) -> NoReturn:
        """Raise the error that explains why a swap's arguments are refused (off the hot
        path: only called when one of them is wrong)."""
        self._route(asset)  # an unknown asset, or an empty pool
        check_amount(amount, name)
        if amount == 0:
            error = InsufficientInputAmount if name == "amount_in" else InsufficientOutputAmount
            raise error(f"{name} is zero")
        raise PoolError(f"{trader!r} is the pool itself (UniswapV2: INVALID_TO)")

    @staticmethod
    def _refuse_output(amount_out: int, min_out: int) -> NoReturn:
        if not amount_out:
            raise InsufficientOutputAmount("the input is too small to buy one base unit")
        raise SlippageError(f"would pay out {amount_out}, less than min_out {min_out}")

    # -- liquidity -------------------------------------------------------------------------

    def add_liquidity(
        self,
        provider: str,
        token_desired: int,
        base_desired: int,
        token_min: int = 0,
        base_min: int = 0,
    ) -> tuple[int, int, int]:
        """Deposit both assets and mint LP shares to `provider`; return
        `(token_used, base_used, shares)`.

        Router semantics (UniswapV2Router02._addLiquidity): the first deposit takes both
        amounts as given and so sets the price; later deposits take all of one desired amount
        and the matching amount of the other at the current ratio (rounded down), refusing
        (`SlippageError`) if that falls below its `*_min`. Shares (UniswapV2Pair.mint): first
        `isqrt(token * base) - MINIMUM_LIQUIDITY`, with MINIMUM_LIQUIDITY more minted to
        ZERO_ADDRESS forever; later `min(dt * S // T, db * S // B)`.
        """
        for name, value in (
            ("token_desired", token_desired),
            ("base_desired", base_desired),
            ("token_min", token_min),
            ("base_min", base_min),
        ):
            check_amount(value, name)
        self._check_provider(provider)
        if not token_desired or not base_desired:
            raise InsufficientInputAmount("add_liquidity needs both assets")
        rt, rb = self.reserves
        supply = self.total_shares
        if supply == 0:
            # Like UniswapV2Pair.mint with reserves never synced, anything donated to the pool
            # account before the first deposit counts as part of it.
            token_used, base_used = token_desired, base_desired
            minted = isqrt((rt + token_used) * (rb + base_used))
            shares = minted - MINIMUM_LIQUIDITY
        else:
            base_optimal = quote(token_desired, rt, rb)
            if base_optimal <= base_desired:
                if base_optimal < base_min:
                    raise SlippageError(f"base {base_optimal} below base_min {base_min}")
                token_used, base_used = token_desired, base_optimal
            else:
                token_optimal = quote(base_desired, rb, rt)
                if token_optimal < token_min:
                    raise SlippageError(f"token {token_optimal} below token_min {token_min}")
                token_used, base_used = token_optimal, base_desired
            minted = shares = min(token_used * supply // rt, base_used * supply // rb)
        if shares <= 0:
            raise InsufficientLiquidity("deposit too small to mint a share (LIQUIDITY_MINTED)")
        self._check_funds(provider, token_used, base_used)
        new_t, new_b, new_s = rt + token_used, rb + base_used, supply + minted
        # Invariant: the new shares dilute no one. Each reserve per share does not fall
        # (T'*S >= T*S' and B'*S >= B*S'), so sqrt(k)/S does not fall either; on the first
        # deposit, S'**2 <= T'*B' (isqrt rounds down).
        if supply:
            if new_t * supply < rt * new_s or new_b * supply < rb * new_s:
                raise InvariantViolation(f"{self.address}: a deposit would dilute the shares")
        elif new_s * new_s > new_t * new_b:
            raise InvariantViolation(f"{self.address}: first deposit minted too many shares")
        ledger = self.ledger
        ledger.transfer(provider, self.address, self.token, token_used)
        ledger.transfer(provider, self.address, self.base, base_used)
        if not supply:
            ledger.mint(ZERO_ADDRESS, self.lp_asset, MINIMUM_LIQUIDITY)
        ledger.mint(provider, self.lp_asset, shares)
        return token_used, base_used, shares

    def remove_liquidity(
        self, provider: str, shares: int, token_min: int = 0, base_min: int = 0
    ) -> tuple[int, int]:
        """Burn `shares` of `provider` and pay out their part of both reserves, each rounded
        down (UniswapV2Pair.burn); return `(token_out, base_out)`. Refuses (`SlippageError`)
        below `token_min` / `base_min`, and (`InsufficientLiquidity`) if either would be 0."""
        check_amount(shares, "shares")
        check_amount(token_min, "token_min")
        check_amount(base_min, "base_min")
        self._check_provider(provider)
        if not shares:
            raise InsufficientInputAmount("shares is zero")
        have = self.ledger.balance(provider, self.lp_asset)
        if have < shares:
            raise InsufficientBalance(provider, self.lp_asset, have, shares)
        rt, rb = self.reserves
        supply = self.total_shares
        token_out = shares * rt // supply
        base_out = shares * rb // supply
        if not token_out or not base_out:
            raise InsufficientLiquidity("too few shares to pay out a base unit of each asset")
        if token_out < token_min:
            raise SlippageError(f"token {token_out} below token_min {token_min}")
        if base_out < base_min:
            raise SlippageError(f"base {base_out} below base_min {base_min}")
        new_t, new_b, new_s = rt - token_out, rb - base_out, supply - shares
        # Invariant: the shares left are worth no less each (T'*S >= T*S', B'*S >= B*S'), and
        # the locked shares keep both reserves above zero.
        if new_t <= 0 or new_b <= 0 or new_t * supply < rt * new_s or new_b * supply < rb * new_s:
            raise InvariantViolation(f"{self.address}: a withdrawal would take too much")
        ledger = self.ledger
        ledger.burn(provider, self.lp_asset, shares)
        ledger.transfer(self.address, provider, self.token, token_out)
        ledger.transfer(self.address, provider, self.base, base_out)
        return token_out, base_out

    def _check_provider(self, provider: str) -> None:
        if provider in (self.address, ZERO_ADDRESS):
            raise PoolError(f"{provider!r} cannot provide or withdraw liquidity")

    def _check_funds(self, provider: str, token_amount: int, base_amount: int) -> None:
        ledger = self.ledger
        for asset, amount in ((self.token, token_amount), (self.base, base_amount)):
            have = ledger.balance(provider, asset)
            if have < amount:
                raise InsufficientBalance(provider, asset, have, amount)

    # -- quotes (read only) ----------------------------------------------------------------

    def quote_exact_in(self, asset_in: str, amount_in: int) -> int:
        """What `swap_exact_in(_, asset_in, amount_in)` would pay out now."""
        r_in, r_out = self._route(asset_in)
        return get_amount_out(amount_in, r_in, r_out, self.fee_bps)

    def quote_exact_out(self, asset_out: str, amount_out: int) -> int:
        """What `swap_exact_out(_, asset_out, amount_out)` would take in now."""
        r_out, r_in = self._route(asset_out)
        return get_amount_in(amount_out, r_in, r_out, self.fee_bps)

    def spot_price(self) -> float:
        """Marginal price before fees, base per token (`reserve_base / reserve_token`)."""
        r_t, r_b = self._route(self.token)
        return r_b / r_t
