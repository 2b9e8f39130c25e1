"""abm.amm.pool: Uniswap V2 semantics to the unit, slippage guards, atomic refusals, quotes.

Vectors from v2-core `test/UniswapV2Pair.spec.ts` (mint, swap:token0, swap:token1, burn,
feeTo:off, getInputPrice) and v2-periphery `test/UniswapV2Router01.spec.ts` /
`UniswapV2Router02.spec.ts`. The pair's token0 and token1 are
mapped both ways onto the pool's (token, base): every vector runs with token0 as the client
token and again with token0 as USD.
"""


import pytest
from test_amm_math import SWAP_TEST_CASES

from abm.amm import (
    MINIMUM_LIQUIDITY,
    ONE,
    ZERO_ADDRESS,
    InsufficientBalance,
    InsufficientInputAmount,
    InsufficientLiquidity,
    InsufficientOutputAmount,
    Ledger,
    Pool,
    PoolError,
    SlippageError,
    get_amount_in,
    get_amount_out,
    k_holds,
)

E18 = ONE
TOTAL_SUPPLY = 10_000 * E18  # the fixtures' ERC20s mint 10000e18 to the wallet
WALLET = "wallet"


class Pair:
    """A Pool seen through the pair's token0/token1 names, for porting the spec's vectors."""

    def __init__(self, token0_is_token: bool):
        self.ledger = Ledger()
        self.pool = Pool(self.ledger, "TKN", "USD")
        self.token0, self.token1 = ("TKN", "USD") if token0_is_token else ("USD", "TKN")
        for asset in ("TKN", "USD"):
            self.ledger.mint(WALLET, asset, TOTAL_SUPPLY)

    def add_liquidity(self, amount0, amount1, provider=WALLET):
        if self.token0 == "TKN":
            return self.pool.add_liquidity(provider, amount0, amount1)
        used1, used0, shares = self.pool.add_liquidity(provider, amount1, amount0)
        return used0, used1, shares

    def reserves(self):
        reserve_token, reserve_base = self.pool.reserves
        if self.token0 == "TKN":
            return reserve_token, reserve_base
        return reserve_base, reserve_token

    def balance(self, asset, account=WALLET):
        return self.ledger.balance(account, asset)

    def lp_balance(self, account=WALLET):
        return self.ledger.balance(account, self.pool.lp_asset)


@pytest.fixture(params=[True, False], ids=["token0=TKN", "token0=USD"])
def pair(request):
    return Pair(token0_is_token=request.param)


def snapshot(ledger):
    return (
        {a: ledger.holders(a) for a in ledger.assets()},
        {a: (ledger.minted(a), ledger.burned(a)) for a in ledger.assets()},
    )


# -- UniswapV2Pair.spec.ts ----------------------------------------------------------------


def test_mint(pair):
    token0_amount, token1_amount = 1 * E18, 4 * E18
    expected_liquidity = 2 * E18
    _, _, shares = pair.add_liquidity(token0_amount, token1_amount)
    assert shares == expected_liquidity - MINIMUM_LIQUIDITY
    assert pair.pool.total_shares == expected_liquidity
    assert pair.lp_balance() == expected_liquidity - MINIMUM_LIQUIDITY
    assert pair.lp_balance(ZERO_ADDRESS) == MINIMUM_LIQUIDITY
    assert pair.balance(pair.token0, pair.pool.address) == token0_amount
    assert pair.balance(pair.token1, pair.pool.address) == token1_amount
    assert pair.reserves() == (token0_amount, token1_amount)
    pair.ledger.check()


@pytest.mark.parametrize(
    ("swap_amount", "token0_amount", "token1_amount", "expected"), SWAP_TEST_CASES
)
def test_get_input_price(pair, swap_amount, token0_amount, token1_amount, expected):
    pair.add_liquidity(token0_amount, token1_amount)
    # The pair reverts (UniswapV2: K) on expected + 1: here, buying one unit more than the
    # expected output costs more than swap_amount.
    with pytest.raises(SlippageError):
        pair.pool.swap_exact_out(WALLET, pair.token1, expected + 1, max_in=swap_amount)
    assert pair.pool.swap_exact_in(WALLET, pair.token0, swap_amount, min_out=expected) == expected
    with pytest.raises(SlippageError):
        # and asking for one more than the pool pays is refused too
        pair.pool.swap_exact_in(WALLET, pair.token0, swap_amount, min_out=10**40)


def test_swap_token0(pair):
    token0_amount, token1_amount = 5 * E18, 10 * E18
    pair.add_liquidity(token0_amount, token1_amount)
    swap_amount = 1 * E18
    expected_output = 1662497915624478906
    assert pair.pool.swap_exact_in(WALLET, pair.token0, swap_amount) == expected_output
    assert pair.reserves() == (token0_amount + swap_amount, token1_amount - expected_output)
    assert pair.balance(pair.token0) == TOTAL_SUPPLY - token0_amount - swap_amount
    assert pair.balance(pair.token1) == TOTAL_SUPPLY - token1_amount + expected_output
    pair.ledger.check()


def test_swap_token1(pair):
    token0_amount, token1_amount = 5 * E18, 10 * E18
    pair.add_liquidity(token0_amount, token1_amount)
    swap_amount = 1 * E18
    expected_output = 453305446940074565
    assert pair.pool.swap_exact_in(WALLET, pair.token1, swap_amount) == expected_output
    assert pair.reserves() == (token0_amount - expected_output, token1_amount + swap_amount)
    assert pair.balance(pair.token0) == TOTAL_SUPPLY - token0_amount + expected_output
    assert pair.balance(pair.token1) == TOTAL_SUPPLY - token1_amount - swap_amount
    pair.ledger.check()


def test_burn(pair):
    token0_amount = token1_amount = 3 * E18
    pair.add_liquidity(token0_amount, token1_amount)
    expected_liquidity = 3 * E18
    out = pair.pool.remove_liquidity(WALLET, expected_liquidity - MINIMUM_LIQUIDITY)
    assert out == (token0_amount - 1000, token1_amount - 1000)
    assert pair.lp_balance() == 0
    assert pair.pool.total_shares == MINIMUM_LIQUIDITY
    assert pair.reserves() == (1000, 1000)
    assert pair.balance(pair.token0) == TOTAL_SUPPLY - 1000
    assert pair.balance(pair.token1) == TOTAL_SUPPLY - 1000
    pair.ledger.check()


def test_fee_to_off(pair):
    pair.add_liquidity(1000 * E18, 1000 * E18)
    expected_output = 996006981039903216
    assert pair.pool.swap_exact_in(WALLET, pair.token1, E18) == expected_output
    pair.pool.remove_liquidity(WALLET, 1000 * E18 - MINIMUM_LIQUIDITY)
    assert pair.pool.total_shares == MINIMUM_LIQUIDITY
    # the fee stayed in the pool: the locked shares are now worth more than 1000 of each
    reserve0, reserve1 = pair.reserves()
    assert reserve0 * reserve1 > 1000 * 1000
    pair.ledger.check()


# -- UniswapV2Router01/02.spec.ts -----------------------------------------------------------


def test_router_add_liquidity(pair):
    assert pair.add_liquidity(1 * E18, 4 * E18) == (1 * E18, 4 * E18, 2 * E18 - MINIMUM_LIQUIDITY)


def test_router_remove_liquidity(pair):
    pair.add_liquidity(1 * E18, 4 * E18)
    pair.pool.remove_liquidity(WALLET, 2 * E18 - MINIMUM_LIQUIDITY)
    assert pair.reserves() == (500, 2000)
    assert pair.lp_balance() == 0
    assert pair.balance(pair.token0) == TOTAL_SUPPLY - 500
    assert pair.balance(pair.token1) == TOTAL_SUPPLY - 2000


def test_router_swap_tokens_for_exact_tokens(pair):
    pair.add_liquidity(5 * E18, 10 * E18)
    expected_swap_amount = 557227237267357629
    assert pair.pool.swap_exact_out(WALLET, pair.token1, E18) == expected_swap_amount
    assert pair.reserves() == (5 * E18 + expected_swap_amount, 9 * E18)
    pair.ledger.check()


def test_router_get_amounts_out_and_in(pair):
    pair.add_liquidity(10000, 10000)
    assert pair.pool.quote_exact_in(pair.token0, 2) == 1
    assert pair.pool.quote_exact_out(pair.token1, 1) == 2


def test_later_deposits_take_the_optimal_ratio(pair):
    pair.add_liquidity(1 * E18, 4 * E18)
    # too much token1 offered: all token0 is used, token1 at the pool's ratio
    used0, used1, shares = pair.add_liquidity(E18, 10 * E18)
    assert (used0, used1) == (E18, 4 * E18)
    assert shares == 2 * E18
    # too much token0 offered
    used0, used1, _ = pair.add_liquidity(10 * E18, 4 * E18)
    assert (used0, used1) == (E18, 4 * E18)


# -- guards and atomicity -------------------------------------------------------------------


@pytest.fixture
def pool():
    ledger = Ledger()
    pool = Pool(ledger, "TKN", "USD")
    for account in ("lp", "alice"):
        for asset in ("TKN", "USD"):
            ledger.mint(account, asset, 1000 * E18)
    pool.add_liquidity("lp", 100 * E18, 200 * E18)
    return pool


REFUSED = [
    ("swap_exact_in", ("alice", "USD", 1001 * E18), InsufficientBalance),
    ("swap_exact_in", ("bob", "USD", 1), InsufficientBalance),
    ("swap_exact_in", ("alice", "USD", 0), InsufficientInputAmount),
    ("swap_exact_in", ("alice", "USD", 1), InsufficientOutputAmount),  # buys nothing
    ("swap_exact_in", ("alice", "USD", E18, 10 * E18), SlippageError),
    ("swap_exact_in", ("alice", "EUR", E18), PoolError),
    ("swap_exact_in", ("pool:TKN", "USD", E18), PoolError),
    ("swap_exact_in", ("alice", "USD", 1.5), ValueError),
    ("swap_exact_in", ("alice", "USD", -5), ValueError),
    ("swap_exact_out", ("alice", "TKN", 100 * E18), InsufficientLiquidity),
    ("swap_exact_out", ("alice", "TKN", 99 * E18), InsufficientBalance),
    ("swap_exact_out", ("alice", "TKN", E18, E18), SlippageError),
    ("swap_exact_out", ("alice", "TKN", 0), InsufficientOutputAmount),
    ("swap_exact_out", ("alice", "TKN", 1.0), ValueError),
    ("add_liquidity", ("alice", 1001 * E18, 2002 * E18), InsufficientBalance),
    ("add_liquidity", ("alice", 600 * E18, 1200 * E18), InsufficientBalance),  # base short
    ("add_liquidity", ("alice", 0, E18), InsufficientInputAmount),
    ("add_liquidity", ("alice", E18, 1), InsufficientLiquidity),  # mints no share
    ("add_liquidity", ("alice", E18, 5 * E18, 0, 3 * E18), SlippageError),  # base_min
    ("add_liquidity", ("alice", E18, E18, E18), SlippageError),  # token_min
    ("add_liquidity", (ZERO_ADDRESS, E18, 2 * E18), PoolError),
    ("remove_liquidity", ("alice", 1), InsufficientBalance),
    ("remove_liquidity", ("lp", 0), InsufficientInputAmount),
    ("remove_liquidity", ("lp", 10 * E18, 100 * E18), SlippageError),
    ("remove_liquidity", ("lp", 10 * E18, 0, 100 * E18), SlippageError),
    ("remove_liquidity", (ZERO_ADDRESS, MINIMUM_LIQUIDITY), PoolError),
]


@pytest.mark.parametrize(("verb", "args", "error"), REFUSED)
def test_refused_operations_change_nothing(pool, verb, args, error):
    before = snapshot(pool.ledger)
    counters = (pool.n_swaps, pool.volume_base, pool.fees_base, pool.fees_token)
    with pytest.raises(error):
        getattr(pool, verb)(*args)
    assert snapshot(pool.ledger) == before
    assert (pool.n_swaps, pool.volume_base, pool.fees_base, pool.fees_token) == counters
    pool.ledger.check()


def test_remove_liquidity_refuses_a_share_too_small_to_pay_out(pool):
    pool.ledger.transfer("lp", "alice", pool.lp_asset, 1)
    assert pool.reserves[0] < pool.total_shares  # 1 share is worth less than 1 unit of token
    before = snapshot(pool.ledger)
    with pytest.raises(InsufficientLiquidity):
        pool.remove_liquidity("alice", 1)
    assert snapshot(pool.ledger) == before


def test_empty_pool_refuses_swaps_and_quotes():
    ledger = Ledger()
    pool = Pool(ledger, "TKN")
    ledger.mint("alice", "USD", E18)
    with pytest.raises(InsufficientLiquidity):
        pool.swap_exact_in("alice", "USD", E18)
    with pytest.raises(InsufficientLiquidity):
        pool.swap_exact_out("alice", "TKN", 1)
    with pytest.raises(InsufficientLiquidity):
        pool.spot_price()
    assert pool.reserves == (0, 0)
    assert pool.total_shares == 0


def test_first_deposit_must_exceed_the_locked_shares():
    ledger = Ledger()
    pool = Pool(ledger, "TKN")
    for asset in ("TKN", "USD"):
        ledger.mint("alice", asset, 10**6)
    with pytest.raises(InsufficientLiquidity):
        pool.add_liquidity("alice", 1000, 1000)  # isqrt = 1000: nothing left for alice
    assert pool.add_liquidity("alice", 1001, 1001) == (1001, 1001, 1)


def test_pool_arguments_are_validated():
    ledger = Ledger()
    with pytest.raises(ValueError):
        Pool(ledger, "USD", "USD")
    with pytest.raises(ValueError):
        Pool(ledger, "TKN", fee_bps=10_000)
    with pytest.raises(ValueError):
        Pool(ledger, "")


# -- swaps: exactness, k, counters ----------------------------------------------------------


def test_swaps_keep_k_and_fees_in_the_pool(pool):
    for asset, amount in (("USD", 3 * E18), ("TKN", 2 * E18), ("USD", 12345), ("TKN", 7)):
        reserve_token, reserve_base = pool.reserves
        pool.swap_exact_in("alice", asset, amount)
        new_token, new_base = pool.reserves
        assert new_token * new_base > reserve_token * reserve_base
        token_in = amount if asset == "TKN" else 0
        base_in = amount - token_in
        assert k_holds(reserve_token, reserve_base, new_token, new_base, token_in, base_in)
    pool.ledger.check()


def test_swap_exact_out_pays_exactly_and_charges_get_amount_in(pool):
    reserve_token, reserve_base = pool.reserves
    cost = pool.swap_exact_out("alice", "TKN", E18, max_in=10 * E18)
    assert cost == get_amount_in(E18, reserve_base, reserve_token)
    assert pool.reserves == (reserve_token - E18, reserve_base + cost)
    assert pool.ledger.balance("alice", "TKN") == 1001 * E18


def test_counters_count_volume_in_base_and_fees_in_the_input_asset(pool):
    out = pool.swap_exact_in("alice", "TKN", 10 * E18)
    pool.swap_exact_in("alice", "USD", 4 * E18 + 1)
    cost = pool.swap_exact_out("alice", "USD", E18)  # pays token
    paid = pool.swap_exact_out("alice", "TKN", E18)  # pays base
    assert pool.n_swaps == 4
    assert pool.volume_base == out + 4 * E18 + 1 + E18 + paid
    assert pool.fees_token == 10 * E18 * 30 // 10_000 + cost * 30 // 10_000
    assert pool.fees_base == (4 * E18 + 1) * 30 // 10_000 + paid * 30 // 10_000


def test_swap_that_empties_the_trader_removes_the_holder(pool):
    pool.swap_exact_in("alice", "USD", 1000 * E18)
    assert "alice" not in pool.ledger.holders("USD")
    pool.ledger.check()


def test_fee_bps_is_per_pool():
    ledger = Ledger()
    free, dear = Pool(ledger, "A", fee_bps=0), Pool(ledger, "B", fee_bps=100)
    for asset in ("A", "B", "USD"):
        ledger.mint("x", asset, 10**30)
    free.add_liquidity("x", 10**21, 10**21)
    dear.add_liquidity("x", 10**21, 10**21)
    assert free.swap_exact_in("x", "USD", 10**18) == get_amount_out(10**18, 10**21, 10**21, 0)
    assert dear.swap_exact_in("x", "USD", 10**18) == get_amount_out(10**18, 10**21, 10**21, 100)
    assert dear.fees_base == 10**16
    ledger.check()


# -- liquidity ------------------------------------------------------------------------------


def test_fees_accrue_to_liquidity_providers(pool):
    shares, supply = pool.ledger.balance("lp", pool.lp_asset), pool.total_shares
    k_before = pool.reserves[0] * pool.reserves[1]
    for _ in range(20):
        pool.swap_exact_in("alice", "USD", 10 * E18)
        pool.swap_exact_in("alice", "TKN", 5 * E18)
    assert pool.reserves[0] * pool.reserves[1] > k_before
    token_out, base_out = pool.remove_liquidity("lp", shares)
    # each share now claims more of k than it did: sqrt(out_t*out_b)/shares > sqrt(k)/S
    assert token_out * base_out * supply**2 > k_before * shares**2


def test_remove_liquidity_rounds_down_in_the_pools_favour(pool):
    pool.swap_exact_in("alice", "USD", 7 * E18 + 3)  # make reserves not divide evenly
    reserve_token, reserve_base = pool.reserves
    supply = pool.total_shares
    shares = supply // 3
    token_out, base_out = pool.remove_liquidity("lp", shares)
    assert token_out == shares * reserve_token // supply
    assert base_out == shares * reserve_base // supply
    assert token_out * supply <= shares * reserve_token


def test_locked_shares_sit_with_the_zero_address(pool):
    assert pool.ledger.balance(ZERO_ADDRESS, pool.lp_asset) == MINIMUM_LIQUIDITY
    assert pool.ledger.holders(pool.lp_asset) == {
        ZERO_ADDRESS: MINIMUM_LIQUIDITY,
        "lp": pool.total_shares - MINIMUM_LIQUIDITY,
    }


# -- quotes ---------------------------------------------------------------------------------


def test_quotes_match_the_swaps(pool):
    quote_out = pool.quote_exact_in("USD", 5 * E18)
    assert pool.swap_exact_in("alice", "USD", 5 * E18) == quote_out
    quote_in = pool.quote_exact_out("USD", E18)
    assert pool.swap_exact_out("alice", "USD", E18) == quote_in


def test_spot_price_is_base_per_token(pool):
    assert pool.spot_price() == 2.0
