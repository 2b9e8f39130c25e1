"""abm.amm.market: one pool per token in one ledger, prices and mark-to-market values."""

import subprocess
import sys

import pytest

from abm.amm import ONE, InsufficientLiquidity, Ledger, Market, Pool


@pytest.fixture
def market():
    ledger = Ledger()
    market = Market(ledger)
    for token, (reserve_token, reserve_base) in {"A": (100, 200), "B": (50, 25)}.items():
        pool = market.create_pool(token)
        ledger.mint("seed", token, reserve_token * ONE)
        ledger.mint("seed", "USD", reserve_base * ONE)
        pool.add_liquidity("seed", reserve_token * ONE, reserve_base * ONE)
    return market


def test_create_pool_registers_a_pool_in_the_shared_ledger(market):
    assert set(market.pools) == {"A", "B"}
    pool = market.pools["A"]
    assert isinstance(pool, Pool)
    assert pool.ledger is market.ledger
    assert (pool.base, pool.fee_bps, pool.address, pool.lp_asset) == ("USD", 30, "pool:A", "LP:A")


def test_create_pool_refuses_a_second_pool_for_a_token(market):
    with pytest.raises(ValueError, match="already exists"):
        market.create_pool("A")


def test_create_pool_fee_defaults_to_the_markets(market):
    assert Market(Ledger(), fee_bps=5).create_pool("C").fee_bps == 5
    assert market.create_pool("C", fee_bps=100).fee_bps == 100


def test_price_is_the_spot_price(market):
    assert market.price("A") == 2.0
    assert market.price("B") == 0.5


def test_price_of_an_empty_pool_is_refused(market):
    market.create_pool("C")
    with pytest.raises(InsufficientLiquidity):
        market.price("C")


def test_value_marks_tokens_and_lp_shares_to_market(market):
    ledger = market.ledger
    ledger.mint("alice", "USD", 10 * ONE)
    ledger.mint("alice", "A", 3 * ONE)
    ledger.mint("alice", "B", 4 * ONE)
    ledger.mint("alice", "OTHER", 99 * ONE)  # no pool, no price
    shares = market.pools["A"].total_shares // 10
    ledger.transfer("seed", "alice", "LP:A", shares)
    breakdown = market.value_breakdown("alice")
    assert breakdown["usd"] == 10 * ONE
    assert breakdown["tokens"] == 3 * 2 * ONE + 4 * ONE // 2
    # a tenth of the shares (rounded down) of a pool worth 2 x 200 USD at spot
    assert breakdown["lp"] == 2 * shares * 200 * ONE // market.pools["A"].total_shares
    assert breakdown["lp"] == pytest.approx(40 * ONE, rel=1e-15)
    assert market.value("alice") == sum(breakdown.values())


def test_value_of_an_empty_account_is_zero(market):
    assert market.value_breakdown("nobody") == {"usd": 0, "tokens": 0, "lp": 0}


def test_tokens_of_a_pool_without_liquidity_count_zero(market):
    market.create_pool("C")
    market.ledger.mint("alice", "C", ONE)
    assert market.value("alice") == 0


def test_a_buy_raises_the_price_and_marks_the_lp_up(market):
    ledger = market.ledger
    ledger.mint("alice", "USD", 100 * ONE)
    seed_before = market.value_breakdown("seed")["lp"]
    bought = market.pools["A"].swap_exact_in("alice", "USD", 100 * ONE)
    assert market.price("A") > 2.0
    assert ledger.balance("alice", "A") == bought
    assert market.value_breakdown("seed")["lp"] > seed_before
    ledger.check()


def test_market_core_imports_neither_mesa_nor_torch():
    code = "import sys, abm.amm; print(sorted({'mesa', 'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
