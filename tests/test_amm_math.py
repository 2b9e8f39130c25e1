"""abm.amm.math: the UniswapV2Library formulas and the pair's K check, to the unit.

Vectors: v2-core `test/UniswapV2Pair.spec.ts` (swapTestCases, optimisticTestCases) and
v2-periphery `test/UniswapV2Router02.spec.ts` (quote, getAmountOut, getAmountIn).
"""

from decimal import Decimal

import pytest

from abm.amm import (
    ONE,
    InsufficientInputAmount,
    InsufficientLiquidity,
    InsufficientOutputAmount,
    get_amount_in,
    get_amount_out,
    k_holds,
    quote,
    to_display,
    to_units,
)

E18 = ONE

# UniswapV2Pair.spec.ts swapTestCases: [swapAmount, token0Amount, token1Amount, expectedOutput],
# whole numbers expanded to 18 decimals. The pair swaps swapAmount of token0 for token1.
SWAP_TEST_CASES = [
    (1 * E18, 5 * E18, 10 * E18, 1662497915624478906),
    (1 * E18, 10 * E18, 5 * E18, 453305446940074565),
    (2 * E18, 5 * E18, 10 * E18, 2851015155847869602),
    (2 * E18, 10 * E18, 5 * E18, 831248957812239453),
    (1 * E18, 10 * E18, 10 * E18, 906610893880149131),
    (1 * E18, 100 * E18, 100 * E18, 987158034397061298),
    (1 * E18, 1000 * E18, 1000 * E18, 996006981039903216),
]

# UniswapV2Pair.spec.ts optimisticTestCases: [outputAmount, token0Amount, token1Amount,
# inputAmount]: inputAmount of token0 goes in and outputAmount of token0 comes out (a flash
# swap repaid in the same token).
OPTIMISTIC_TEST_CASES = [
    (997000000000000000, 5 * E18, 10 * E18, 1 * E18),  # amountOut = floor(amountIn * .997)
    (997000000000000000, 10 * E18, 5 * E18, 1 * E18),
    (997000000000000000, 5 * E18, 5 * E18, 1 * E18),
    (1 * E18, 5 * E18, 5 * E18, 1003009027081243732),  # amountIn = ceiling(amountOut / .997)
]


@pytest.mark.parametrize(("swap_amount", "reserve0", "reserve1", "expected"), SWAP_TEST_CASES)
def test_get_amount_out_matches_pair_spec_swap_cases(swap_amount, reserve0, reserve1, expected):
    assert get_amount_out(swap_amount, reserve0, reserve1) == expected


@pytest.mark.parametrize(("swap_amount", "reserve0", "reserve1", "expected"), SWAP_TEST_CASES)
def test_k_check_accepts_expected_output_and_reverts_one_more(
    swap_amount, reserve0, reserve1, expected
):
    def swap_ok(amount1_out):
        return k_holds(
            reserve0, reserve1, reserve0 + swap_amount, reserve1 - amount1_out, swap_amount, 0
        )

    assert swap_ok(expected)
    assert not swap_ok(expected + 1)  # UniswapV2: K


@pytest.mark.parametrize(("output", "reserve0", "reserve1", "input_"), OPTIMISTIC_TEST_CASES)
def test_k_check_matches_pair_spec_optimistic_cases(output, reserve0, reserve1, input_):
    def swap_ok(amount0_out):
        return k_holds(reserve0, reserve1, reserve0 + input_ - amount0_out, reserve1, input_, 0)

    assert swap_ok(output)
    assert not swap_ok(output + 1)  # UniswapV2: K


@pytest.mark.parametrize(("swap_amount", "reserve0", "reserve1", "expected"), SWAP_TEST_CASES)
def test_get_amount_in_buys_the_expected_output_for_at_most_the_swap_amount(
    swap_amount, reserve0, reserve1, expected
):
    assert get_amount_in(expected, reserve0, reserve1) <= swap_amount
    assert get_amount_in(expected + 1, reserve0, reserve1) > swap_amount


def test_router_library_vectors():
    # UniswapV2Router02.spec.ts: quote, getAmountOut, getAmountIn
    assert quote(1, 100, 200) == 2
    assert quote(2, 200, 100) == 1
    assert get_amount_out(2, 100, 100) == 1
    assert get_amount_in(1, 100, 100) == 2
    # UniswapV2Router01.spec.ts swapTokensForExactTokens: 1e18 out of a (5e18, 10e18) pair
    assert get_amount_in(E18, 5 * E18, 10 * E18) == 557227237267357629


def test_router_library_reverts():
    with pytest.raises(InsufficientInputAmount):
        quote(0, 100, 200)
    with pytest.raises(InsufficientLiquidity):
        quote(1, 0, 200)
    with pytest.raises(InsufficientLiquidity):
        quote(1, 100, 0)
    with pytest.raises(InsufficientInputAmount):
        get_amount_out(0, 100, 100)
    with pytest.raises(InsufficientLiquidity):
        get_amount_out(2, 0, 100)
    with pytest.raises(InsufficientLiquidity):
        get_amount_out(2, 100, 0)
    with pytest.raises(InsufficientOutputAmount):
        get_amount_in(0, 100, 100)
    with pytest.raises(InsufficientLiquidity):
        get_amount_in(1, 0, 100)
    with pytest.raises(InsufficientLiquidity):
        get_amount_in(1, 100, 0)


def test_get_amount_in_refuses_to_drain_the_reserve():
    with pytest.raises(InsufficientLiquidity):
        get_amount_in(100, 100, 100)


def test_fee_bps_generalises_997_over_1000():
    # fee 0: plain constant product; fee 100 bps = the 990/1000 of a 1% pool.
    assert get_amount_out(100, 1000, 1000, fee_bps=0) == 100 * 1000 // 1100
    assert get_amount_out(10**6, 10**9, 10**9, fee_bps=100) == (
        10**6 * 990 * 10**9 // (10**9 * 1000 + 10**6 * 990)
    )
    assert get_amount_in(10**6, 10**9, 10**9, fee_bps=100) == (
        10**9 * 10**6 * 1000 // ((10**9 - 10**6) * 990) + 1
    )


@pytest.mark.parametrize("fee_bps", [-1, 10_000, 30.0, True])
def test_fee_bps_out_of_range_is_refused(fee_bps):
    with pytest.raises(ValueError, match="fee_bps"):
        get_amount_out(1, 100, 100, fee_bps=fee_bps)


@pytest.mark.parametrize("amount", [1.0, -1, True, "1"])
def test_non_int_or_negative_amounts_are_refused(amount):
    with pytest.raises(ValueError, match="amount_in"):
        get_amount_out(amount, 100, 100)


def test_to_units_is_exact_and_rounds_down():
    assert to_units(1) == ONE
    assert to_units(0.1) == 10**17
    assert to_units("1.5") == 15 * 10**17
    assert to_units(Decimal("0.000000000000000001")) == 1
    assert to_units("0.0000000000000000019") == 1
    assert to_units("-0.0000000000000000001") == -1  # down, towards -infinity
    assert to_units(0.3) == 3 * 10**17  # the float's shortest repr, not its binary expansion
    assert to_display(15 * 10**17) == 1.5


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc", None, True])
def test_to_units_refuses_non_numbers(bad):
    with pytest.raises(ValueError):
        to_units(bad)
