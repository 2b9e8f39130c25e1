"""Market core: an exact-integer Uniswap V2 constant-product AMM over one ledger.

Plain library (no Mesa, no torch). Amounts are Python ints in base units (18 decimals).
"""

from abm.amm.ledger import InsufficientBalance, InvariantViolation, Ledger, LedgerError
from abm.amm.market import JointLiquidation, Market, pro_rata
from abm.amm.math import (
    BASE,
    BPS,
    DEFAULT_FEE_BPS,
    MINIMUM_LIQUIDITY,
    ONE,
    InsufficientInputAmount,
    InsufficientLiquidity,
    InsufficientOutputAmount,
    PoolError,
    SlippageError,
    get_amount_in,
    get_amount_out,
    k_holds,
    quote,
    to_display,
    to_units,
)
from abm.amm.pool import ZERO_ADDRESS, Pool

__all__ = [
    "BASE",
    "BPS",
    "DEFAULT_FEE_BPS",
    "MINIMUM_LIQUIDITY",
    "ONE",
    "ZERO_ADDRESS",
    "InsufficientBalance",
    "InsufficientInputAmount",
    "InsufficientLiquidity",
    "InsufficientOutputAmount",
    "InvariantViolation",
    "JointLiquidation",
    "Ledger",
    "LedgerError",
    "Market",
    "Pool",
    "PoolError",
    "SlippageError",
    "get_amount_in",
    "get_amount_out",
    "k_holds",
    "pro_rata",
    "quote",
    "to_display",
    "to_units",
]
