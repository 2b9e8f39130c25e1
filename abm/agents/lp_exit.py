"""Exit rules of liquidity providers: when an LP withdraws from the pools (docs/model.md,
section 7.11).

A rule is a registered component (`abm.registry`, kind `lp_exit`); the LP asks it every step
once it has entered. On exit the LP removes its liquidity and sells the tokens back.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from abm.registry import Component, param
from abm.registry import Params as _Params

if TYPE_CHECKING:
    from abm.agents.liquidity import LiquidityProvider


class ExitRule(Component):
    """Base class: whether a liquidity provider leaves the pools at `step`."""

    kind = "lp_exit"

    @abstractmethod
    def should_exit(self, lp: LiquidityProvider, step: int) -> bool:
        """True to withdraw now."""


class Hold(ExitRule):
    """Stays in the pools to the end of the run."""

    name = "hold"

    def should_exit(self, lp, step):
        return False


class StopLoss(ExitRule):
    """Withdraws everything once its wealth (marked at spot) falls below (1 - stop_loss)
    of its starting cash."""

    name = "stop_loss"

    class Params(_Params):
        stop_loss: float = param(0.1, "loss of starting cash that triggers the exit",
                                 unit="fraction", gt=0, lt=1)

    def should_exit(self, lp, step):
        return lp.wealth < (1.0 - self.params.stop_loss) * lp.start_cash


class Horizon(ExitRule):
    """Withdraws after a fixed number of steps in the pools."""

    name = "horizon"

    class Params(_Params):
        horizon: int = param(200, "steps in the pools before exiting", unit="steps", ge=1,
                             le=10**6)

    def should_exit(self, lp, step):
        return step >= lp.spec.enter_step + self.params.horizon
