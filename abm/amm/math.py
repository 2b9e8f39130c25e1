"""Exact integer formulas of a Uniswap V2 constant-product pool, on plain Python ints.

`get_amount_out`, `get_amount_in` and `quote` are UniswapV2Library's (v2-periphery,
`contracts/libraries/UniswapV2Library.sol`) with the fee generalised from 997/1000 to basis
points: `fee_bps=30` gives the contract's numbers to the unit. Amounts are integer base units
(18 decimals, `ONE == 10**18`); Python ints are unbounded, so there is no uint112 cap.

Also here: the errors these formulas and the pool's verbs raise (every one of them means "the
operation was refused and nothing changed"), unit conversion, and the closed-form amount that
moves a pool to a target price.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal, InvalidOperation

BASE = "USD"
"""The base asset every pool quotes against, every fee and reward is paid in, and every
holder is endowed with: the one name the ledger, the pools, the agents and the rewards use."""

ONE = 10**18
"""One display unit (1 USD, 1 token) in base units: 18 decimals, like on-chain tokens."""

BPS = 10_000
"""Basis points in 1: a fee of `fee_bps` keeps `fee_bps / BPS` of every input in the pool."""

DEFAULT_FEE_BPS = 30
"""Uniswap V2's 0.3% fee: the contract's 997/1000 is (BPS - 30) / BPS."""

MINIMUM_LIQUIDITY = 10**3
"""LP shares locked forever at the first deposit (UniswapV2Pair.MINIMUM_LIQUIDITY). They
protect the pool from being emptied down to a price that no later share can represent, and make
inflating the value of one share by donations ruinously expensive."""


class PoolError(Exception):
    """A pool refused an operation; no balance changed."""


class InsufficientInputAmount(PoolError):
    """The amount paid in is zero (UniswapV2: INSUFFICIENT_INPUT_AMOUNT)."""


class InsufficientOutputAmount(PoolError):
    """The amount to receive is zero (UniswapV2: INSUFFICIENT_OUTPUT_AMOUNT)."""


class InsufficientLiquidity(PoolError):
    """The pool has no liquidity, cannot pay that much out, or the deposit or withdrawal is too
    small to mint or burn a whole share (UniswapV2: INSUFFICIENT_LIQUIDITY[_MINTED|_BURNED])."""


class SlippageError(PoolError):
    """The trade would pay out less than `min_out`, take more than `max_in`, or use less than a
    liquidity `*_min` (the router's INSUFFICIENT_*_AMOUNT / EXCESSIVE_INPUT_AMOUNT)."""


def check_fee_bps(fee_bps: int) -> int:
    """Return `fee_bps` if it is an int in [0, BPS); raise ValueError otherwise."""
    if type(fee_bps) is not int or not 0 <= fee_bps < BPS:
        raise ValueError(f"fee_bps must be an int in [0, {BPS}), got {fee_bps!r}")
    return fee_bps


def check_amount(amount: int, name: str = "amount") -> int:
    """Return `amount` if it is a Python int >= 0; raise ValueError otherwise.

    bool and numpy integers are refused on purpose: a float or a fixed-width int slipping into
    a balance would silently break exactness.
    """
    if type(amount) is not int or amount < 0:
        raise ValueError(
            f"{name} must be a Python int >= 0 (base units; see to_units), got {amount!r}"
        )
    return amount


def _check_reserves(reserve_in: int, reserve_out: int) -> None:
    check_amount(reserve_in, "reserve_in")
    check_amount(reserve_out, "reserve_out")
    if reserve_in == 0 or reserve_out == 0:
        raise InsufficientLiquidity("UniswapV2Library: INSUFFICIENT_LIQUIDITY (empty reserve)")


def to_units(x: float | str | Decimal | int) -> int:
    """Display units -> base units, exactly via Decimal, rounding down (towards -infinity).

    A float is read through its shortest repr, so `to_units(0.1) == 10**17` rather than the
    binary expansion's 100000000000000005.
    """
    if isinstance(x, bool):
        raise ValueError(f"to_units takes a number, got {x!r}")
    if isinstance(x, int):
        return x * ONE
    try:
        d = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"to_units takes a number, got {x!r}") from None
    if not d.is_finite():
        raise ValueError(f"to_units takes a finite number, got {x!r}")
    return int((d * ONE).to_integral_value(rounding=ROUND_FLOOR))


def to_display(units: int) -> float:
    """Base units -> display units (float, correctly rounded)."""
    return units / ONE


def quote(amount_a: int, reserve_a: int, reserve_b: int) -> int:
    """Amount of B worth `amount_a` of A at the pool's ratio, no fee, rounded down
    (UniswapV2Library.quote)."""
    check_amount(amount_a, "amount_a")
    if amount_a == 0:
        raise InsufficientInputAmount("UniswapV2Library: INSUFFICIENT_AMOUNT")
    _check_reserves(reserve_a, reserve_b)
    return amount_a * reserve_b // reserve_a


def get_amount_out(
    amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = DEFAULT_FEE_BPS
) -> int:
    """Largest output that `amount_in` buys (UniswapV2Library.getAmountOut).

    `out = in*(BPS-fee)*R_out // (R_in*BPS + in*(BPS-fee))`: the floor keeps the rounding in
    the pool's favour, and `out < R_out` always.
    """
    check_amount(amount_in, "amount_in")
    if amount_in == 0:
        raise InsufficientInputAmount("UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT")
    _check_reserves(reserve_in, reserve_out)
    amount_in_with_fee = amount_in * (BPS - check_fee_bps(fee_bps))
    return amount_in_with_fee * reserve_out // (reserve_in * BPS + amount_in_with_fee)


def get_amount_in(
    amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = DEFAULT_FEE_BPS
) -> int:
    """Smallest input that buys `amount_out` (UniswapV2Library.getAmountIn).

    `in = R_in*out*BPS // ((R_out-out)*(BPS-fee)) + 1`: the contract adds 1 even when the
    division is exact, so the pool's k check always passes; kept to match it to the unit.
    """
    check_amount(amount_out, "amount_out")
    if amount_out == 0:
        raise InsufficientOutputAmount("UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT")
    _check_reserves(reserve_in, reserve_out)
    if amount_out >= reserve_out:
        raise InsufficientLiquidity(
            f"UniswapV2: INSUFFICIENT_LIQUIDITY (amount_out {amount_out} >= reserve {reserve_out})"
        )
    numerator = reserve_in * amount_out * BPS
    denominator = (reserve_out - amount_out) * (BPS - check_fee_bps(fee_bps))
    return numerator // denominator + 1


def k_holds(
    reserve0: int,
    reserve1: int,
    balance0: int,
    balance1: int,
    amount0_in: int,
    amount1_in: int,
    fee_bps: int = DEFAULT_FEE_BPS,
) -> bool:
    """UniswapV2Pair.swap's K check with the fee in bps: after a swap, the balances, each less
    the fee on what came in on its side, keep at least the old k,
    `(b0*BPS - in0*fee) * (b1*BPS - in1*fee) >= r0*r1*BPS**2` (the contract's
    `balance0Adjusted * balance1Adjusted >= reserve0 * reserve1 * 1000**2` at fee_bps=30)."""
    return (balance0 * BPS - amount0_in * fee_bps) * (balance1 * BPS - amount1_in * fee_bps) >= (
        reserve0 * reserve1 * BPS * BPS
    )
