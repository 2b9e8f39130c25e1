"""Property tests of the market core (hypothesis): random sequences of swaps, deposits,
withdrawals, transfers, donations, mints and burns over two pools and four accounts.

After every operation: the ledger's exact invariant holds, every seeded pool has positive
reserves and its locked shares, k never decreased across a swap (and the pair's own K check
accepts the swap), the value of an LP share (sqrt(k) / S) never decreased, and an operation
that was refused changed no balance, no supply and no counter.
"""

from contextlib import suppress

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from abm.amm import (
    MINIMUM_LIQUIDITY,
    ZERO_ADDRESS,
    InsufficientLiquidity,
    Ledger,
    LedgerError,
    Market,
    PoolError,
    get_amount_in,
    get_amount_out,
    k_holds,
)

ACCOUNTS = ("alice", "bob", "carol", "dave")
TOKENS = ("A", "B")
REFUSALS = (PoolError, LedgerError)

accounts = st.sampled_from(ACCOUNTS)
tokens = st.sampled_from(TOKENS)
# Dust (often buys nothing), everyday sizes, and sizes beyond anyone's balance.
amounts = st.one_of(
    st.integers(0, 10**6),
    st.integers(0, 10**22),
    st.integers(0, 10**24),
    st.integers(10**24, 10**28),
)
# Slippage bounds relative to the exact quote: None = no bound, -1 = one unit of slack short
# (refused), 0 = exactly the quote, +1 = one unit of slack.
slack = st.sampled_from([None, -1, 0, 1])
fees = st.sampled_from([0, 1, 30, 100, 1000, 9999])


# A first deposit of x and y mints isqrt(x*y) - MINIMUM_LIQUIDITY > 0 shares when both > 1000.
reserves_and_fees = st.tuples(st.integers(1001, 10**26), st.integers(1001, 10**26), fees)


class MarketMachine(RuleBasedStateMachine):
    @initialize(seeds=st.tuples(reserves_and_fees, reserves_and_fees), wealth=amounts)
    def seed(self, seeds, wealth):
        self.ledger = Ledger()
        self.market = Market(self.ledger)
        for token, (reserve_token, reserve_base, fee_bps) in zip(TOKENS, seeds, strict=True):
            pool = self.market.create_pool(token, fee_bps=fee_bps)
            self.ledger.mint("alice", token, reserve_token)
            self.ledger.mint("alice", "USD", reserve_base)
            pool.add_liquidity("alice", reserve_token, reserve_base)
        for account in ACCOUNTS:
            for asset in ("USD", *TOKENS):
                self.ledger.mint(account, asset, wealth)
        self.ledger.check()

    # -- the harness: every operation runs through here ----------------------------------

    def state(self):
        ledger = self.ledger
        return (
            {asset: ledger.holders(asset) for asset in ledger.assets()},
            {asset: (ledger.minted(asset), ledger.burned(asset)) for asset in ledger.assets()},
            {
                token: (pool.n_swaps, pool.volume_base, pool.fees_base, pool.fees_token)
                for token, pool in self.market.pools.items()
            },
        )

    def k_and_shares(self):
        return {
            token: (pool.reserves[0] * pool.reserves[1], pool.total_shares)
            for token, pool in self.market.pools.items()
        }

    def attempt(self, name, operation):
        """Run `operation`; if refused, prove nothing changed; if done, prove no LP share lost
        value. Returns the operation's result, or None when refused."""
        before, pools_before = self.state(), self.k_and_shares()
        try:
            result = operation()
        except REFUSALS as error:
            event(f"{name}: refused ({type(error).__name__})")
            assert self.state() == before, f"refused {name} changed the ledger"
            return None
        event(f"{name}: done")
        for token, (k_after, shares_after) in self.k_and_shares().items():
            k_before, shares_before = pools_before[token]
            # sqrt(k)/S never decreases: k' * S**2 >= k * S'**2
            assert k_after * shares_before**2 >= k_before * shares_after**2, token
        return result

    def swap_checked(self, token, name, operation):
        pool = self.market.pools[token]
        reserves_before = pool.reserves
        result = self.attempt(name, operation)
        if result is None:
            return None
        (rt, rb), (new_t, new_b) = reserves_before, pool.reserves
        assert new_t * new_b >= rt * rb, "k decreased across a swap"
        token_in, base_in = max(new_t - rt, 0), max(new_b - rb, 0)
        assert (token_in == 0) != (base_in == 0), "a swap takes exactly one asset in"
        assert k_holds(rt, rb, new_t, new_b, token_in, base_in, pool.fee_bps)
        return result

    # -- rules ---------------------------------------------------------------------------

    @rule(token=tokens, trader=accounts, sell_base=st.booleans(), amount=amounts, slip=slack)
    def swap_exact_in(self, token, trader, sell_base, amount, slip):
        pool = self.market.pools[token]
        asset = pool.base if sell_base else token
        min_out = 0
        if slip is not None and amount:
            with suppress(InsufficientLiquidity):  # the swap itself will be refused
                min_out = pool.quote_exact_in(asset, amount) - slip
        bought = token if sell_base else pool.base
        bought_before = self.ledger.balance(trader, bought)
        out = self.swap_checked(
            token, "swap_exact_in", lambda: pool.swap_exact_in(trader, asset, amount, min_out)
        )
        if out is not None:
            assert out >= min_out
            assert self.ledger.balance(trader, bought) == bought_before + out

    @rule(token=tokens, trader=accounts, buy_base=st.booleans(), amount=amounts, slip=slack)
    def swap_exact_out(self, token, trader, buy_base, amount, slip):
        pool = self.market.pools[token]
        asset = pool.base if buy_base else token
        max_in = None
        if slip is not None and amount:
            with suppress(InsufficientLiquidity):
                max_in = pool.quote_exact_out(asset, amount) + slip
        cost = self.swap_checked(
            token, "swap_exact_out", lambda: pool.swap_exact_out(trader, asset, amount, max_in)
        )
        if cost is not None and max_in is not None:
            assert cost <= max_in

    @rule(token=tokens, provider=accounts, token_amount=amounts, base_amount=amounts, slip=slack)
    def add_liquidity(self, token, provider, token_amount, base_amount, slip):
        pool = self.market.pools[token]
        token_min = base_min = 0
        if slip == -1:  # ask for more than both desired amounts: refused unless refused anyway
            token_min, base_min = token_amount + 1, base_amount + 1
        result = self.attempt(
            "add_liquidity",
            lambda: pool.add_liquidity(provider, token_amount, base_amount, token_min, base_min),
        )
        if result is not None:
            token_used, base_used, shares = result
            assert 0 < token_used <= token_amount and 0 < base_used <= base_amount
            assert shares > 0

    @rule(token=tokens, provider=accounts, part=st.integers(0, 1100), slip=slack)
    def remove_liquidity(self, token, provider, part, slip):
        pool = self.market.pools[token]
        held = self.ledger.balance(provider, pool.lp_asset)
        shares = held * part // 1000 if part <= 1000 else held + part  # >100%: refused
        token_min = base_min = 0
        if slip is not None and shares and pool.total_shares:
            rt, rb = pool.reserves
            token_min = shares * rt // pool.total_shares - slip
            base_min = shares * rb // pool.total_shares - slip
        result = self.attempt(
            "remove_liquidity",
            lambda: pool.remove_liquidity(provider, shares, max(token_min, 0), max(base_min, 0)),
        )
        if result is not None:
            assert result[0] >= token_min and result[1] >= base_min

    @rule(
        src=accounts,
        dst=st.sampled_from((*ACCOUNTS, "pool:A", "pool:B")),
        asset=st.sampled_from(("USD", *TOKENS, "LP:A", "LP:B")),
        amount=amounts,
    )
    def transfer(self, src, dst, asset, amount):
        # Transfers to a pool account are donations: they raise k for the pool's LPs.
        self.attempt("transfer", lambda: self.ledger.transfer(src, dst, asset, amount))

    @rule(account=accounts, asset=st.sampled_from(("USD", *TOKENS)), amount=amounts)
    def mint(self, account, asset, amount):
        self.attempt("mint", lambda: self.ledger.mint(account, asset, amount))

    @rule(account=accounts, asset=st.sampled_from(("USD", *TOKENS)), amount=amounts)
    def burn(self, account, asset, amount):
        self.attempt("burn", lambda: self.ledger.burn(account, asset, amount))

    @invariant()
    def ledger_balances(self):
        self.ledger.check()

    @invariant()
    def pools_stay_seeded(self):
        for pool in self.market.pools.values():
            reserve_token, reserve_base = pool.reserves
            assert reserve_token > 0 and reserve_base > 0
            assert self.ledger.balance(ZERO_ADDRESS, pool.lp_asset) == MINIMUM_LIQUIDITY
            assert pool.total_shares >= MINIMUM_LIQUIDITY


MarketMachine.TestCase.settings = settings(
    max_examples=1000,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMarketMachine = pytest.mark.slow(MarketMachine.TestCase)


# -- the formulas on their own ------------------------------------------------------------

reserves = st.integers(1, 10**30)


@settings(max_examples=1500, deadline=None)
@given(amount_in=st.integers(1, 10**30), reserve_in=reserves, reserve_out=reserves, fee=fees)
def test_get_amount_out_is_the_largest_output_the_k_check_accepts(
    amount_in, reserve_in, reserve_out, fee
):
    out = get_amount_out(amount_in, reserve_in, reserve_out, fee)
    assert 0 <= out < reserve_out

    def accepted(amount_out):
        return k_holds(
            reserve_in,
            reserve_out,
            reserve_in + amount_in,
            reserve_out - amount_out,
            amount_in,
            0,
            fee,
        )

    assert accepted(out)
    assert out + 1 == reserve_out or not accepted(out + 1)


@settings(max_examples=1500, deadline=None)
@given(amount_out=st.integers(1, 10**30), reserve_in=reserves, reserve_out=reserves, fee=fees)
def test_get_amount_in_buys_at_least_the_output_and_no_less_would(
    amount_out, reserve_in, reserve_out, fee
):
    if amount_out >= reserve_out:
        return
    amount_in = get_amount_in(amount_out, reserve_in, reserve_out, fee)
    assert get_amount_out(amount_in, reserve_in, reserve_out, fee) >= amount_out
    assert k_holds(
        reserve_in, reserve_out, reserve_in + amount_in, reserve_out - amount_out, amount_in, 0, fee
    )
    # The least input that works is ceil(N/D); the library's floor(N/D) + 1 is that, or one
    # more when the division is exact. Two less never works.
    assert amount_in <= 2 or get_amount_out(amount_in - 2, reserve_in, reserve_out, fee) < (
        amount_out
    )
