"""FL clients as market agents: each owns a data partition (in the federation) and a token."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from abm.agents.choice import choose
from abm.agents.conduct import NOT_DRAWN
from abm.agents.orders import SALE_PURPOSES, SaleBook
from abm.agents.participation import RoundRecord
from abm.agents.trader import DUST, Trader
from abm.amm import BASE, ONE
from abm.streams import stream

if TYPE_CHECKING:
    from abm.agents.cash_out import CashOutRule
    from abm.agents.conduct import ConductRule
    from abm.agents.issuance import IssuanceRule
    from abm.agents.participation import ParticipationRule
    from abm.model import WallStreetFedsModel

#: The ledger account that receives every client's training costs (docs/model.md, 7.13):
#: USD spent on compute and data leaves the economy's agents but stays in the books, so the
#: accounting identity holds with it and the money table shows what training cost.
COST_SINK = "costs"


class Client(Trader):
    """An FL client: trains in the federation, holds its own token, cashes out by a rule.

    The cash-out rule (`abm.agents.cash_out`) is applied right after each round's rewards,
    once per round. Every sale respects the client's price-impact limit (`max_slippage`).

    Before each round it decides whether to train (`join_round`: its participation rule,
    `abm.agents.participation`) and pays `cost` (USD base units per round) when it does; in
    every step it sells what the scenario's offering asks of it (`offer`,
    `abm.agents.issuance`). Books, base units: `cost_paid` (training costs borne),
    `offering_usd` / `offering_tokens` (raised / sold through the offering),
    `funding_usd` / `funding_tokens` (raised / issued to fund training costs),
    `issued` (new tokens issued, both kinds); `rounds_participated` and `history` (one
    `RoundRecord` per round, what the rule reads).

    Its conduct (`abm.agents.conduct`) says what it does in each round it trains: its
    behaviour (`fixed`), or an action it chooses before the round (`willing`) and learns
    from after it (`learn_round`); `action` is the latest round's, `action_counts` counts
    them.
    """

    agent_type = "client"

    def __init__(self, model: WallStreetFedsModel, client_id: str, behaviour: str,
                 cash_out: CashOutRule, max_slippage: float, *, index: int = 0,
                 cost_per_round: int = 0, participation: ParticipationRule | None = None,
                 issuance: IssuanceRule | None = None, genesis_supply: int = 0,
                 conduct: ConductRule | None = None) -> None:
        super().__init__(model, f"client:{client_id}", behaviour, max_slippage, client_id)
        self.token = client_id
        self.index = index
        self.cash_out_rule = cash_out
        self.cost = cost_per_round
        self.participation_rule = participation
        self.issuance = issuance
        self.participating = True
        #: Whether its rule wanted it to train in the latest round (paid or not).
        self.wants = True
        self.rounds_participated = 0
        self.history: list[RoundRecord] = []
        self.cost_paid = 0
        self.issued = 0
        self.issuable = issuance.issuable(genesis_supply) if issuance is not None else 0
        self.offer_left = (issuance.offered_tokens()
                           if issuance is not None and issuance.sells(index) else 0)
        self.offering_usd = self.offering_tokens = 0
        self.funding_usd = self.funding_tokens = 0
        #: Its own sales by purpose (`abm.agents.orders.SALE_PURPOSES`): tokens asked and
        #: sold, proceeds in USD, cumulative (`SaleBook`).
        self.sales = {purpose: SaleBook() for purpose in SALE_PURPOSES}
        self.conduct = conduct
        #: Whether it chooses an action every round (an adaptive conduct) or keeps its
        #: behaviour (fixed, and no conduct at all).
        self.adaptive = conduct is not None and bool(conduct.actions)
        #: What it does in the round about to run or just run: its behaviour's name when
        #: fixed, else its chosen action (`abm.agents.conduct.ACTIONS`).
        self.action = behaviour
        self.action_counts: dict[str, int] = {}
        if self.adaptive:
            self._action_index = 0
            #: Its learning state (one recency-weighted payoff per action, USD).
            self.conduct_state = conduct.start()
            #: One uniform draw per round, whatever it chooses (`abm.streams`).
            self._conduct_rng = stream(model.config.seed, f"agent:{self.account}/conduct")

    def act(self) -> None:
        self.offer()
        if self.model.view.round_just_ran:
            self.cash_out()
        elif self.wants and self.cost and self.issuance is not None and self.issuance.fund_costs:
            # Raise the next round's cost ahead, one guarded sale a step (docs/model.md,
            # 7.14): one sale can raise only about max_slippage x the pool's USD, so a cost
            # above that could never be met at the round alone.
            self._fund(self.cost - self.balance(BASE))

    def cash_out(self) -> None:
        """Sell own tokens for USD as the cash-out rule says; what it asked and sold go on
        the round's row (`cash_out_asked_tokens`, `cash_out_sold_tokens`) and in `sales`."""
        amount = self.cash_out_rule.tokens_to_sell(self)
        if amount > 0:
            sold, _ = self._sell_tokens(amount, new=False, purpose="cash_out")
            rows = self.model.last_round_rows
            if rows:
                row = rows[self.index]
                row["cash_out_asked_tokens"] += amount / ONE
                row["cash_out_sold_tokens"] += sold / ONE

    # -- participation (docs/model.md, 7.13) ----------------------------------------------------

    def willing(self) -> bool:
        """Whether its participation rule wants it to train in the round about to run (on
        the records so far); nothing is paid yet."""
        if self.adaptive:
            # Available: its participation rule is `always` (the schema says so); whether it
            # trains is its action's, chosen once it knows it is invited (`choose_action`).
            self.wants = True
            return True
        rule = self.participation_rule
        self.wants = (rule is None
                      or rule.participates(self.history, self.cost / ONE, self.participating))
        return self.wants

    def choose_action(self, drawn: bool) -> None:
        """An adaptive client's choice for the round about to run, once the round's sample
        is known (docs/model.md, 7.15 and 7.16): invited (`drawn`), it picks an action,
        sitting out included; not invited, it chooses nothing (`NOT_DRAWN`) and stays
        willing. One uniform is drawn either way, so its draws stay aligned with its twin's."""
        u = float(self._conduct_rng.random())
        if not drawn:
            self.action = NOT_DRAWN
            return
        self._action_index = choose(self.conduct.probabilities(self.conduct_state), u)
        self.action = self.conduct.actions[self._action_index]
        self.action_counts[self.action] = self.action_counts.get(self.action, 0) + 1
        self.wants = self.action != "sit_out"

    @property
    def round_cost(self) -> int:
        """What training in the round about to run costs it (USD base units): its
        `cost_per_round`, times its action's cost factor when its conduct is adaptive."""
        if not self.adaptive:
            return self.cost
        # Exact decimal arithmetic on base units (0.05 x 20 USD is 1 USD to the unit),
        # rounded down as `abm.amm.to_units` rounds.
        return int(Decimal(self.cost) * Decimal(repr(self.conduct.cost_factor(self.action))))

    def learn_round(self, paid: int) -> None:
        """After a round it took part in or sat out by choice: an adaptive conduct learns
        from the payoff of its action, the reward it realised by realisable value (the last
        `RoundRecord`) minus `paid` (USD base units spent on the round)."""
        if self.adaptive:
            payoff = self.history[-1].reward_usd - paid / ONE
            self.conduct.learn(self.conduct_state, self._action_index, payoff)

    def join_round(self, drawn: bool = True) -> bool:
        """Train in the round about to run if it is willing (`willing`, called just before)
        and `drawn` (the round's client sample, docs/model.md 7.15); pay its cost if so.

        A willing client whose USD (after issuing tokens for the shortfall, if the scenario's
        issuance funds costs) does not cover `cost` sits the round out. A change of willingness
        from the previous round is recorded as a `leave` or `join` event; a willing client
        that was not drawn stays in the federation and pays nothing (no event).
        """
        wants = self.wants
        reason = "" if wants else "its expected reward does not cover its cost"
        trains = wants and drawn
        cost = self.round_cost
        if trains and cost:
            if self.issuance is not None and self.issuance.fund_costs:
                self._fund(cost - self.balance(BASE))
            if self.balance(BASE) < cost:
                wants = trains = False
                reason = "it cannot pay its cost"
            else:
                self.market.ledger.transfer(self.account, COST_SINK, BASE, cost)
                self.cost_paid += cost
        # An adaptive client's sitting out is an action of the round (rounds.parquet's
        # `action`), not a leave: no event.
        if wants != self.participating and not self.adaptive:
            kind = "join" if wants else "leave"
            text = (f"{self.token} rejoins the federation" if wants
                    else f"{self.token} leaves the federation: {reason}")
            self.model.record_event(kind, client=self.token, agent_id=self.unique_id, text=text)
        self.participating = wants
        self.rounds_participated += trains
        return trains

    def record_round(self, reward: int, budget_usd: float, participants: int) -> None:
        """Remember the round just run: `reward` is what the payout added to the client's
        holdings if sold (base units)."""
        self.history.append(RoundRecord(self.participating, reward / ONE, float(budget_usd),
                                        participants))

    # -- issuance (docs/model.md, 7.14) -------------------------------------------------------

    def offer(self) -> None:
        """Sell this step's tranche of the offering into the client's pool."""
        if self.issuance is None or not self.offer_left:
            return
        start, end = self.issuance.window()
        step = self.model.steps
        if step == start:
            self.model.record_event(
                "offering_start", client=self.token, agent_id=self.unique_id,
                text=f"{self.token} offers {self.offer_left / ONE:,.0f} "
                     f"{'new' if self.issuance.source == 'new' else 'genesis'} tokens "
                     f"until step {end - 1}")
        amount = self.issuance.tranche(self.index, step, self.offer_left)
        if amount:
            sold, usd = self._sell_tokens(amount, new=self.issuance.source == "new",
                                          purpose="offering")
            self.offer_left -= sold
            self.offering_tokens += sold
            self.offering_usd += usd
        if step == end - 1 or not self.offer_left:
            self.model.record_event(
                "offering_end", client=self.token, agent_id=self.unique_id,
                text=f"{self.token} sold {self.offering_tokens / ONE:,.0f} tokens for "
                     f"{self.offering_usd / ONE:,.2f} USD")
            self.offer_left = 0

    def _fund(self, shortfall: int) -> None:
        """Issue and sell new tokens for `shortfall` USD (base units), within the dilution
        limit and the price-impact limit."""
        if shortfall <= 0:
            return
        pool = self.market.pools[self.token]
        reserve_token, reserve_base = pool.reserves
        if shortfall >= reserve_base:
            return  # no sale into this pool can raise that much
        from abm.amm import get_amount_in

        amount = get_amount_in(shortfall, reserve_token, reserve_base, pool.fee_bps)
        sold, usd = self._sell_tokens(amount, new=True, purpose="funding")
        self.funding_tokens += sold
        self.funding_usd += usd

    def _sell_tokens(self, amount: int, *, new: bool, purpose: str) -> tuple[int, int]:
        """Sell up to `amount` tokens (base units) into the client's pool, newly minted
        (`new`, within what the dilution limit leaves) or from its balance, for `purpose`
        (`SALE_PURPOSES`). Returns (tokens sold, proceeds in USD), base units. Minted tokens the
        guard did not let sell are burned again, so that only what was sold is ever issued.
        The order goes on record (`abm.agents.orders`) with what the dilution limit, the
        holding and the trade guard cut, and in `sales[purpose]`."""
        ledger = self.market.ledger
        asked = amount
        price = self.model.view.price_list[self.index]
        if new:
            amount = min(amount, self.issuable - self.issued)
            if amount <= 0:
                if asked >= DUST:
                    self.model.marks.orders.record(self.mark_row, False, price, asked, 0,
                                                   dilution=asked)
                self.sales[purpose].add(asked, 0, 0, price)
                return 0, 0
            ledger.mint(self.account, self.token, amount)
        held = self.balance(self.token)
        usd = self.sell(self.token, amount, asked=asked, dilution=asked - amount)
        sold = held - self.balance(self.token)
        if new:
            if amount > sold:
                ledger.burn(self.account, self.token, amount - sold)
            self.issued += sold
        self.sales[purpose].add(asked, sold, usd, price)
        return sold, usd
