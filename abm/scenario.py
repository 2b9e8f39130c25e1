"""Scenario files: the typed schema, safe YAML loading, and one-paragraph error messages.

A scenario is data, never code: it is read with a safe YAML loader (no object tags, duplicate
keys refused), validated by a pydantic schema in which unknown keys are errors, and checked for
impossible combinations before anything runs. Every problem becomes a `ScenarioError` whose text
names the file, the field path, the bad value and what is allowed; the CLI prints it and exits
with code 2.

Units: money in the file is in USD **display units** (floats, `1.0` is one dollar); token
amounts are in whole tokens (display units). The model converts both to 18-decimal base units.
Time is in **steps**; an FL round runs every `round_every` steps.

This module imports neither mesa nor torch, so `wsf validate` stays fast.
"""

from __future__ import annotations

import copy
import json
import re
from math import isqrt
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    SerializationInfo,
    SerializeAsAny,
    ValidationError,
    model_validator,
)

from abm import registry
from abm.amm import MINIMUM_LIQUIDITY, to_units
from abm.errors import (
    FieldProblem,
    ScenarioError,
    format_validation_error,
    problem_text,
    shown,
)
from abm.registry import KINDS, Params, param

__all__ = [
    "MIN_SAMPLES_PER_CLIENT",
    "ClientGroup",
    "ContributionSpec",
    "FLSpec",
    "InvestorGroup",
    "LiquidityGroup",
    "MarketSpec",
    "PartitionSpec",
    "RewardsSpec",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
    "read_yaml",
]

#: Each client must hold at least this many training samples (a local epoch on fewer is noise).
MIN_SAMPLES_PER_CLIENT = 8
#: Largest money or token amount a scenario may give (display units): far beyond any
#: experiment, and small enough that 18-decimal base units stay exact integers.
MAX_AMOUNT = 1e15
#: Most clients, investors and liquidity providers in one scenario (over all groups).
MAX_CLIENTS = 10_000
#: Most identities one client may register (`clients[].identities`, a Sybil attack).
MAX_IDENTITIES = 10
MAX_INVESTORS = 100_000
MAX_LPS = 10_000


def _whole_base_units(x: float) -> float:
    # Balances are integers of 10^-18 (to_units rounds down): 1e-30 USD would silently be 0.
    if x > 0 and to_units(x) == 0:
        raise ValueError(
            f"{x!r} is less than one base unit (1e-18) and would be 0 in the ledger; an "
            f"amount must be 0 or at least 1e-18"
        )
    return x


#: USD or tokens (display units) that the ledger holds exactly enough: never a positive
#: amount that rounds to 0 base units. The range comes with each field.
Amount = Annotated[float, AfterValidator(_whole_base_units)]


class _Spec(BaseModel):
    """Base of every section: unknown keys are errors (they are almost always typos), types
    are strict (`"30"` is not a number, `true` is not 1, `30.0` is not an integer) and floats
    must be finite (NaN and infinities are refused with that reason), as in every
    component's parameters (`abm.registry.Params`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# -- component slots ----------------------------------------------------------------------------
# Where a scenario names a registered component (`abm.registry`). Names and parameters are
# checked against the registry when a file is validated, so a component declared anywhere
# (including by a test) is accepted at once, with its own parameters.


def _nested(kind: str, data: Any) -> Any:
    """Before-validator of a section naming a `kind` component in `tag` with its parameters
    in `params_key`: replaces the parameter mapping by the component's validated `Params`."""
    k = KINDS[kind]
    if not isinstance(data, dict):
        return data  # pydantic reports the type
    name = data.get(k.tag, k.default)
    if name is None:
        return data  # pydantic reports the missing name
    cls = registry.get(kind, name)
    raw = data.get(k.params_key)
    if isinstance(raw, Params) and registry.component_of(raw) is cls:
        return data
    if isinstance(raw, Params):
        raw = raw.model_dump()  # the name changed; keep what applies (refused otherwise)
    return {**data, k.params_key: cls.validate(raw, prefix=f"{k.params_key}.")}


def _flat(kind: str) -> Any:
    """Type of a field holding a flat `kind` component: ``{tag: name, **params}``."""
    k = KINDS[kind]

    def validate(value: Any) -> Any:
        if isinstance(value, Params):
            return value
        if isinstance(value, str):  # named alone: its default parameters
            value = {k.tag: value}
        if not isinstance(value, dict):
            raise FieldProblem("", value, f"expected a name, or a mapping with `{k.tag}` and "
                               f"the {k.title.lower()}'s parameters")
        name = value.get(k.tag, k.default)
        return registry.get(kind, name).validate({**value, k.tag: name}, spec=True)

    def dump(value: Params, info: SerializationInfo) -> dict[str, Any]:
        data = value.model_dump(mode=info.mode)
        return {k.tag: data.pop(k.tag), **data}  # the name first, as a reader expects

    return Annotated[Params, BeforeValidator(validate), PlainSerializer(dump)]


def _default(kind: str) -> Any:
    """Field of a flat slot: the default component with default parameters."""
    k = KINDS[kind]
    return Field(default_factory=lambda: registry.get(kind, k.default).Spec(),
                 description=f"the {k.title.lower()}: `{k.tag}` names it, its parameters "
                 "sit beside it")


class _Named(_Spec):
    """A section naming a component of `kind` with its parameters in a sibling mapping."""

    kind: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _component(cls, data: Any) -> Any:
        return _nested(cls.kind, data)


# -- sections -----------------------------------------------------------------------------------


class PartitionSpec(_Spec):
    """How the training data is split among clients."""

    scheme: Literal["iid", "dirichlet", "quantity_skew"] = param(
        "dirichlet", "iid: random equal shares; dirichlet: label skew, each class spread by "
        "Dirichlet(alpha) proportions; quantity_skew: sizes drawn from Dirichlet(alpha)"
    )
    alpha: float = param(0.5, "Dirichlet concentration (smaller: more unequal); dirichlet and "
                         "quantity_skew only", gt=0, le=1000)
    seed: int | None = param(
        None, "seed of the data draw (dataset subsample, validation split, partition); null: "
        "the scenario seed. Set it to keep every client's data fixed while the run seed varies "
        "(a sweep's seeds then vary the market, the training's randomness and behaviours' "
        "label noise, and client c00 holds the same samples in every seed)",
        ge=0, le=2**32 - 1)


class FLSpec(_Spec):
    """The federated-training sub-model (FedAvg; CPU or CUDA)."""

    dataset: _flat("dataset") = _default("dataset")  # type: ignore[valid-type]
    partition: PartitionSpec = param(PartitionSpec(), "how the training data is split")
    val_fraction: float = param(0.2, "share of the data held out by the federation to "
                                "evaluate models (accuracy, coalition utilities)",
                                unit="fraction", ge=0.05, le=0.5)
    model: Literal["logreg", "mlp", "cnn"] = param(
        "mlp", "logreg: softmax regression; mlp: one hidden layer; cnn: a small convolutional "
        "net for 32x32 colour images (cifar10, cifar10_standin)"
    )
    hidden: int = param(32, "units of the MLP's hidden layer", ge=1, le=4096)
    local_epochs: int = param(1, "passes over its data each client makes per round",
                              unit="epochs", ge=1, le=100)
    batch_size: int = param(32, "local SGD mini-batch", unit="samples", ge=1, le=4096)
    lr: float = param(0.1, "local SGD learning rate", gt=0, le=10)
    metric: Literal["accuracy", "neg_loss"] = param(
        "neg_loss", "utility of a coalition model on the validation split: accuracy, or minus "
        "the cross-entropy loss (the default: continuous, so contribution methods can rank "
        "clients in rounds where accuracy moves by less than one validation sample; "
        "docs/model.md, section 7.5)"
    )
    utility_samples: int | None = Field(
        None, ge=10, le=10_000_000,
        description="validation samples (a stratified subset drawn once from the seed) on "
                    "which coalition utilities are measured; null = the whole validation "
                    "split; the global model's accuracy always uses the whole split",
        json_schema_extra={"unit": "samples"},
    )
    clients_per_round: int | None = param(
        None, "clients drawn each round, uniformly without replacement among those willing "
        "to train (FedAvg's client sampling, the fraction C of McMahan et al. 2017): only "
        "they pay their cost, train, play the round's coalition game and share its budget; "
        "null = every willing client trains (docs/model.md, section 7.15)",
        unit="clients", ge=1, le=1_000_000)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="where training and coalition evaluation run: auto = cuda when torch "
                    "sees a GPU, else cpu; config.yaml records the device actually used",
    )


class ContributionSpec(_Named):
    """How each round's contributions are measured and turned into reward shares."""

    kind: ClassVar[str] = "method"

    method: str = param("gtg_shapley", "the contribution method (a registered component)")
    params: SerializeAsAny[Params] = param(Params(), "the method's parameters")
    negative: Literal["carry", "clip", "shift"] = param(
        "carry", "how scores below zero count: carry = a round pays what lifts a client's "
        "contributions to date above their highest total so far (a round that hurt the model "
        "is made up before the client earns again, so the chance positive rounds of a noise "
        "update do not add up to pay); clip = s_i = max(c_i, 0) / sum, each round on its own; "
        "shift = s_i proportional to c_i - min(c), keeps the order when every score is "
        "negative; docs/model.md, section 7.6"
    )
    coalition: Literal["round_weights", "coalition_fedavg"] = param(
        "round_weights", "how a coalition's model is formed in the round's game: "
        "round_weights = the round's aggregate with only the coalition's updates, each at its "
        "weight in the round (a client that sent a zero update is a null player, worth exactly "
        "0 whatever data size it claims); coalition_fedavg = the FedAvg of the coalition's own "
        "updates, weights renormalised within it (a zero update dilutes the others' step and "
        "can earn value where the full step overshoots; kept for comparison); docs/model.md, "
        "section 7.4"
    )
    zero_total: Literal["equal", "withhold"] = param(
        "withhold", "when no client has a positive score (a round the method could not rank, "
        "e.g. GTG's between-round truncation): keep the budget in the federation's treasury "
        "(a round that cannot tell clients apart pays nobody), or split it equally; the money "
        "table shows what was kept"
    )


class RewardsSpec(_Named):
    """The distribution policy (docs/model.md, section 7.7) and its budget."""

    kind: ClassVar[str] = "policy"

    policy: str = param("buyback", "the reward policy (a registered component)")
    params: SerializeAsAny[Params] = param(Params(), "the policy's parameters")
    budget: _flat("budget") = _default("budget")  # type: ignore[valid-type]


class ClientGroup(_Named):
    """A group of FL clients with the same behaviour and cash-out rule."""

    kind: ClassVar[str] = "behaviour"

    count: int = param(..., "clients in the group", ge=1, le=MAX_CLIENTS)
    behaviour: str = param("honest", "how they train (a registered component)")
    behaviour_params: SerializeAsAny[Params] = param(Params(), "the behaviour's parameters")
    cash_out: _flat("cash_out") = _default("cash_out")  # type: ignore[valid-type]
    max_slippage: float = param(0.02, "largest price impact of one of its sales",
                                unit="fraction", gt=0, le=1)
    cost_per_round: Amount = param(
        0.0, "what training one round costs each client (compute, data, opportunity), paid "
        "from its USD to the cost sink when it trains; a client that cannot pay sits the "
        "round out", unit="USD per round", ge=0, le=MAX_AMOUNT,
    )
    participation: _flat("participation") = _default("participation")  # type: ignore[valid-type]
    conduct: _flat("conduct") = _default("conduct")  # type: ignore[valid-type]
    identities: int = param(
        1, "identities each client of the group registers: k > 1 is a Sybil attack, k "
        "client accounts, each with its own token, pool and cost, sharing one client's data "
        "(docs/model.md, 7.18); 1 is an honest registration", unit="identities per client",
        ge=1, le=MAX_IDENTITIES,
    )


class MarketSpec(_Spec):
    """Genesis of the token markets (display units)."""

    fee_bps: int = param(30, "swap fee of every pool (30 = 0.3 %, Uniswap V2)",
                         unit="basis points", ge=0, le=1000)
    opening_price: float = param(0.25, "spot price of every token at genesis",
                                 unit="USD per token", ge=1e-6, le=1e9)
    initial_supply: Amount = param(10_000.0, "tokens each client holds at genesis",
                                  unit="tokens", gt=0, le=MAX_AMOUNT)
    pool_tokens: Amount = param(10_000.0, "tokens seeded into each pool at genesis (with "
                               "pool_tokens x opening_price USD)", unit="tokens", gt=0,
                               le=MAX_AMOUNT)
    seeded_by: Literal["federation", "client"] = param(
        "federation", "who seeds each pool: the federation mints the tokens and USD, or the "
        "client deposits from its own supply and cash"
    )
    client_cash: Amount = param(0.0, "USD each client holds at genesis", unit="USD", ge=0,
                               le=MAX_AMOUNT)
    round_continuation: float = param(
        0.98, "the market's belief: probability that another FL round follows each round; "
        "fundamental investors expect p / (1 - p) more rounds whatever the run's length "
        "(0.98: 49 rounds)", unit="probability per round", ge=0, le=0.999,
    )
    issuance: _flat("issuance") = _default("issuance")  # type: ignore[valid-type]


class CollectSpec(_Spec):
    """What the run tables record, and how often."""

    agents_every: int = param(
        1, "agents.parquet holds every agent's row at step 0, at every step that is a "
        "multiple of this, and at the last step (model.parquet keeps one row per step)",
        unit="steps", ge=1, le=1_000_000,
    )


class InvestorGroup(_Named):
    """A group of third-party investors sharing one strategy."""

    kind: ClassVar[str] = "strategy"

    strategy: str = param(..., "how they trade (a registered component)")
    count: int = param(..., "investors in the group", ge=0, le=100_000)
    cash: Amount = param(500.0, "USD each holds at genesis", unit="USD", gt=0, le=MAX_AMOUNT)
    inventory: float = param(
        0.2, "share of its cash spent at genesis on a starting inventory, split evenly over "
        "the tokens and bought from the federation at the opening price (no swap, no price "
        "move), so that it can sell as well as buy from the first step: with 0 a population "
        "that starts in USD can only buy, and pushes every price up by itself "
        "(docs/model.md, section 5)", unit="fraction", ge=0, lt=1)
    params: SerializeAsAny[Params] = param(Params(), "the strategy's parameters")
    max_position: float = param(0.5, "largest share of its wealth held in one token",
                                unit="fraction", gt=0, le=1)
    max_trade: float = param(0.2, "largest share of its cash spent on one buy",
                             unit="fraction", gt=0, le=1)
    max_slippage: float = param(0.02, "largest price impact of one of its trades",
                                unit="fraction", gt=0, le=1)
    activation: float = param(
        1.0, "probability that an investor acts in a step (a coin of its own each step; "
        "1 = every step)", unit="probability per step", gt=0, le=1)
    size_dispersion: float = param(
        0.0, "log-normal sigma of each investor's order-size factor exp(sigma Z - sigma^2 / "
        "2) (mean 1), drawn once; its orders are that factor times what its strategy asks "
        "(0 = all the same)", ge=0, le=3)
    watchlist: int | None = param(
        None, "tokens each investor follows: a uniformly drawn subset of this many clients' "
        "tokens (at most the clients), its own, drawn once from its stream "
        "agent:<account>/watchlist; it buys its genesis inventory and trades only in them "
        "(its inventory share of cash split over them); null = every token. A group whose "
        "strategy names its own tokens (manipulator) refuses one (docs/model.md, section "
        "7.9)", unit="tokens", ge=1, le=1_000_000)
    switching: _flat("switching") = _default("switching")  # type: ignore[valid-type]


class LiquidityGroup(_Spec):
    """A group of liquidity providers."""

    count: int = param(..., "liquidity providers in the group", ge=0, le=10_000)
    cash: Amount = param(5000.0, "USD each holds at genesis", unit="USD", gt=0, le=MAX_AMOUNT)
    allocation: float = param(0.8, "share of its cash put into the pools, split evenly",
                              unit="fraction", gt=0, le=1)
    enter_step: int = param(
        0, "step at which it deposits; 0 = at genesis, buying the token side from the "
        "federation at the opening price (no swap, no price move); later it zaps: swaps half "
        "of each pool's budget into the token (recorded as zapped_usd)", unit="step", ge=0,
        le=10**6,
    )
    exit: _flat("lp_exit") = _default("lp_exit")  # type: ignore[valid-type]


class Scenario(_Spec):
    """One simulation: the federation, the clients, the market and who trades on it."""

    name: str = param("scenario", "names the run folder", min_length=1, max_length=100,
                      pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = param("", "free text")
    seed: int = param(0, "drives every random source of the run", ge=0, le=2**32 - 1)
    steps: int = param(500, "market steps to simulate", unit="steps", ge=1, le=1_000_000)
    round_every: int = param(10, "an FL round runs every this many steps", unit="steps",
                             ge=1, le=100_000)
    fl: FLSpec = param(FLSpec(), "the federated training")
    contribution: ContributionSpec = param(ContributionSpec(), "how contributions are "
                                           "measured")
    rewards: RewardsSpec = param(RewardsSpec(), "what the buyers pay and how it is paid out")
    market: MarketSpec = param(MarketSpec(), "genesis of the token markets")
    clients: list[ClientGroup] = param([ClientGroup(count=10)], "the FL clients, in groups "
                                       "(ids c00, c01, ... in order)", min_length=1,
                                       max_length=MAX_CLIENTS)
    investors: list[InvestorGroup] = param([], "third-party investors, in groups",
                                           max_length=1000)
    liquidity_providers: list[LiquidityGroup] = param([], "liquidity providers, in groups",
                                                      max_length=1000)
    collect: CollectSpec = param(CollectSpec(), "what the run tables record")
    counterfactual: bool = param(
        False, "also run the twin (same scenario and seed, reward budget 0) and write it under "
        "counterfactual/ in the run folder; it replays the run's learning while its clients train "
        "in the same rounds, so it adds the run's market time, not its learning time"
    )

    #: The mapping the scenario was validated from: overrides apply to it, so that a value
    #: left to its default stays a default (switching `contribution.method` does not carry
    #: the previous method's filled-in parameters along).
    _input: dict[str, Any] = PrivateAttr(default_factory=dict)
    #: Where the scenario came from (a file path, "overrides", ...), for later messages.
    _source: str = PrivateAttr("<scenario>")

    @model_validator(mode="wrap")
    @classmethod
    def _keep_input(cls, data: Any, handler: Any) -> Scenario:
        scenario = handler(data)
        if isinstance(data, dict):
            scenario._input = copy.deepcopy(data)
        return scenario

    def __eq__(self, other: object) -> bool:
        # What the scenario is, not how it was written (`_input`, `_source`).
        return isinstance(other, Scenario) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    # -- derived -----------------------------------------------------------------------------

    @property
    def n_clients(self) -> int:
        """Client accounts (FL participants, tokens, pools): every identity counts."""
        return sum(g.count * g.identities for g in self.clients)

    @property
    def n_owners(self) -> int:
        """Distinct clients, each holding its own data: identities of one owner count once."""
        return sum(g.count for g in self.clients)

    def client_owners(self) -> list[int]:
        """The owner (0 .. `n_owners` - 1) of each client account, in `client_groups` order:
        a group's identities of one client are consecutive accounts."""
        out: list[int] = []
        owner = 0
        for group in self.clients:
            for _ in range(group.count):
                out.extend([owner] * group.identities)
                owner += 1
        return out

    @property
    def n_rounds(self) -> int:
        """FL rounds in the run: one every `round_every` steps."""
        return self.steps // self.round_every

    # -- impossible combinations ---------------------------------------------------------------

    @model_validator(mode="after")
    def _feasible(self) -> Scenario:
        n = self.n_clients
        method = registry.get("method", self.contribution.method)
        if method.max_clients is not None and n > method.max_clients:
            raise FieldProblem(
                "contribution.method", self.contribution.method,
                f"{method.name} is limited to {method.max_clients} clients; this scenario has "
                f"{n} clients (use gtg_shapley or shapley_mc)",
            )
        if self.fl.clients_per_round is not None and self.fl.clients_per_round > n:
            raise FieldProblem(
                "fl.clients_per_round", self.fl.clients_per_round,
                f"a round draws its clients among the scenario's {n}: give at most {n}, or "
                f"null to let every willing client train",
            )
        for i, group in enumerate(self.investors):
            if group.watchlist is None:
                continue
            path = f"investors[{i}].watchlist"
            if group.watchlist > n:
                raise FieldProblem(
                    path, group.watchlist,
                    f"an investor follows a subset of the scenario's {n} tokens: give at "
                    f"most {n}, or null to follow every token")
            if not registry.get("strategy", group.strategy).follows_watchlist:
                raise FieldProblem(
                    path, group.watchlist,
                    f"strategy {group.strategy!r} trades the tokens its own rule names and "
                    f"follows no watchlist: leave watchlist null for this group")
        for field, total, most in (("clients", n, MAX_CLIENTS),
                                   ("investors", sum(g.count for g in self.investors),
                                    MAX_INVESTORS),
                                   ("liquidity_providers",
                                    sum(g.count for g in self.liquidity_providers), MAX_LPS)):
            if total > most:
                raise FieldProblem(field, f"{total} in all groups",
                                   f"at most {most:,} in one scenario")
        source = registry.build(self.fl.dataset)
        wanted = getattr(source.params, "n_samples", None)
        if wanted is not None and source.size is not None and wanted > source.size:
            # The resolved config must never claim samples that were not used.
            raise FieldProblem(
                "fl.dataset.n_samples", wanted,
                f"{source.name} has {source.size} samples; give at most that, or leave "
                f"n_samples out to use them all",
            )
        size = source.expected_size()
        if size is not None:
            train = size - round(size * self.fl.val_fraction)
            n = self.n_owners  # a Sybil's identities share one client's data
            if train < n * MIN_SAMPLES_PER_CLIENT:
                raise FieldProblem(
                    "clients", n,
                    f"{n} clients need at least {n * MIN_SAMPLES_PER_CLIENT} training samples "
                    f"({MIN_SAMPLES_PER_CLIENT} each) but {source.name} leaves {train} after "
                    f"the validation split",
                )
        for path, params in self.component_slots():
            # Every component checks in, whatever its kind: a refusal is the scenario's.
            component = registry.component_of(params)
            problem = component.check_in(params, self)
            if problem:
                raise FieldProblem(path, _slot_value(params), problem)
        if self.fl.model == "cnn" and source.image_shape != (3, 32, 32):
            raise FieldProblem(
                "fl.model", "cnn",
                "the CNN expects 32x32 colour images: use it with cifar10 or cifar10_standin"
            )
        m = self.market
        if m.pool_tokens > m.initial_supply and m.seeded_by == "client":
            raise FieldProblem(
                "market.pool_tokens", m.pool_tokens,
                f"a client seeding its own pool cannot deposit more than its initial supply "
                f"({m.initial_supply})",
            )
        pool_usd = m.pool_tokens * m.opening_price
        if isqrt(to_units(m.pool_tokens) * to_units(pool_usd)) <= MINIMUM_LIQUIDITY:
            raise FieldProblem(
                "market.opening_price", m.opening_price,
                f"a pool of {m.pool_tokens:g} tokens at this price holds {pool_usd:g} USD, too "
                f"little to seed it (the first deposit must exceed MINIMUM_LIQUIDITY: "
                f"sqrt(tokens x USD) > {MINIMUM_LIQUIDITY} base units); raise the price or "
                f"market.pool_tokens",
            )
        need = pool_usd
        if m.seeded_by == "client" and m.client_cash < need:
            raise FieldProblem(
                "market.client_cash", m.client_cash,
                f"clients seed their pools with pool_tokens x opening_price = {need:g} USD, "
                f"so client_cash must be at least that",
            )
        if self.steps < self.round_every:
            raise FieldProblem(
                "steps", self.steps,
                f"at least one FL round must run, because contributions, rewards and the "
                f"twin's comparison are measured per round and a run without one measures "
                f"none of them: steps must be >= round_every ({self.round_every}); for a "
                f"shorter smoke test shorten the rounds too (wsf run FILE --steps "
                f"{min(self.steps, self.round_every)} --set round_every="
                f"{max(1, min(self.steps, self.round_every))})",
            )
        return self

    # -- use ------------------------------------------------------------------------------------

    @property
    def source(self) -> str:
        """The file (or other origin) the scenario was read from; messages name it."""
        return self._source

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario (every default filled in), JSON-safe."""
        return self.model_dump(mode="json")

    def with_overrides(self, overrides: dict[str, Any], *, source: str = "overrides") -> Scenario:
        """A new, revalidated scenario with dotted-path values replaced.

        Paths use dots for fields and integers for list items:
        ``{"rewards.policy": "mint", "investors.0.count": 50, "seed": 3}``. A path must name
        a field of the resolved scenario (or a parameter inside a parameter mapping); the
        value replaces what the file said there, and every field the file left to its
        default keeps its default. Parameters belong to their component: an override that
        switches a component (``contribution.method``, ``rewards.budget.kind``, ...) drops
        the parameters given for the previous one, except those the overrides set.
        """
        resolved = self.to_dict()
        data = copy.deepcopy(self._input) if self._input else copy.deepcopy(resolved)
        for path, value in overrides.items():
            _set_path(data, resolved, path, value, source)
        for path, value in overrides.items():
            _reset_switched_params(data, resolved, path, value, overrides)
        scenario = parse_scenario(data, source=source)
        scenario._source = self._source
        return scenario

    def twin(self) -> Scenario:
        """The counterfactual twin: the same scenario and seed with a reward budget of zero.

        Comparing a run with its twin attributes outcomes to the reward mechanism; the twin
        itself never runs a twin.
        """
        return self.with_overrides(
            {"rewards.budget": {"kind": "constant", "amount": 0.0}, "counterfactual": False},
            source=f"scenario {self.name!r} (counterfactual twin)",
        )

    def component_slots(self) -> list[tuple[str, Params]]:
        """Every component the scenario names, as ``(field path, validated parameters)``.

        The path is the one a user writes: the parameter mapping of a component named
        beside its parameters (``rewards.params``, ``clients[2].behaviour_params``), the
        field itself for a flat one (``market.issuance``, ``clients[0].cash_out``). In the
        order of `abm.registry.KINDS`, groups in file order. Read from each kind's `section`,
        so a new kind's slots are walked without a line here; `registry.component_of`
        gives each slot's component.
        """
        slots: list[tuple[str, Params]] = []
        for kind in KINDS.values():
            for path, holder in _holders(self, kind.section):
                if kind.params_key is None:
                    slots.append((path, holder))
                else:
                    slots.append((f"{path}.{kind.params_key}",
                                  getattr(holder, kind.params_key)))
        return slots

    def client_groups(self) -> list[tuple[str, ClientGroup]]:
        """Client ids (`c00`, `c01`, ...) paired with their group, in order."""
        width = max(2, len(str(self.n_clients - 1)))
        out: list[tuple[str, ClientGroup]] = []
        for group in self.clients:
            for _ in range(group.count * group.identities):
                out.append((f"c{len(out):0{width}d}", group))
        return out


def _holders(root: BaseModel, section: str) -> list[tuple[str, Any]]:
    """``(path, object)`` of every object a `Kind.section` (``"clients[i].cash_out"``)
    names under `root`: ``[i]`` stands for every item of a list, in order."""
    found: list[tuple[str, Any]] = [("", root)]
    for part in section.split("."):
        key = part.removesuffix("[i]")
        below: list[tuple[str, Any]] = []
        for path, holder in found:
            value, at = getattr(holder, key), f"{path}.{key}" if path else key
            if part.endswith("[i]"):
                below.extend((f"{at}[{i}]", item) for i, item in enumerate(value))
            else:
                below.append((at, value))
        found = below
    return found


def _slot_value(params: Params) -> dict[str, Any]:
    """What a message shows of a component slot: the parameters, the naming key first for
    a flat component (as the file writes it)."""
    component = registry.component_of(params)
    tag = KINDS[component.kind].tag
    if KINDS[component.kind].params_key is None:
        return {tag: component.name, **params.model_dump(mode="json")}
    return params.model_dump()


# -- loading ----------------------------------------------------------------------------------


#: Bounds on what a scenario or sweep file may expand to, checked on the parser's event stream
#: before anything is built. Real files are a few kilobytes, a few hundred values and a few
#: levels deep; a "billion laughs" file (nested aliases) of 400 bytes would expand to 10^9
#: values, and tens of thousands of `[` would exhaust the recursive composer.
MAX_YAML_BYTES = 1 << 20
#: Values (mappings, lists and scalars) after expanding every alias.
MAX_YAML_NODES = 100_000
#: Levels of nested mappings and lists.
MAX_YAML_DEPTH = 50


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that also refuses duplicate keys (the later one would silently win)."""


def _no_duplicates(loader: _StrictSafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value, not a list or mapping",
                key_node.start_mark,
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shown(key)}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates
)


class _TooBig(Exception):
    """The document exceeds a bound; `str()` says which one and where."""


def _check_expansion(text: str, max_nodes: int = MAX_YAML_NODES) -> None:
    """Refuse a document that would expand beyond `max_nodes` values or MAX_YAML_DEPTH.

    Works on the parser's events, which are produced without recursion and without building
    anything: each collection counts the values it would hold with every alias expanded (an
    alias counts as the size of the value it names), so a bomb is caught after reading a
    few hundred bytes, in constant memory. Raises `_TooBig`, or `yaml.YAMLError` for text
    that is not YAML.
    """
    open_sizes: list[int] = []  # values counted so far in each open collection
    open_anchors: list[str | None] = []
    sizes: dict[str, int] = {}  # anchor -> expanded size of the value it names
    total = 0

    def add(n: int, mark: Any) -> None:
        nonlocal total
        if open_sizes:
            open_sizes[-1] += n
            size = open_sizes[-1]
        else:
            total += n
            size = total
        if size > max_nodes:
            raise _TooBig(
                f"expands to more than {max_nodes:,} values{_at(mark)} (aliases are "
                f"counted as copies of what they name); a real file holds a few hundred"
            )

    for event in yaml.parse(text, Loader=_StrictSafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_sizes) >= MAX_YAML_DEPTH:
                raise _TooBig(
                    f"nests lists and mappings more than {MAX_YAML_DEPTH} levels "
                    f"deep{_at(event.start_mark)}"
                )
            open_sizes.append(1)
            open_anchors.append(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            size = open_sizes.pop()
            anchor = open_anchors.pop()
            if anchor is not None:
                sizes[anchor] = size
            add(size, event.start_mark)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            add(1, event.start_mark)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise _TooBig(
                    f"holds an alias *{event.anchor} inside the value it names (a cycle)"
                    f"{_at(event.start_mark)}"
                )
            add(sizes.get(event.anchor, 1), event.start_mark)


def _at(mark: Any) -> str:
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def read_yaml(
    path: str | Path,
    *,
    kind: str = "scenario",
    max_bytes: int = MAX_YAML_BYTES,
    max_nodes: int = MAX_YAML_NODES,
) -> dict[str, Any]:
    """Read a YAML mapping safely (no object tags, no duplicate keys, bounded expansion).

    Every failure is a `ScenarioError` naming the file; `kind` ("scenario", "sweep") names
    what the file was meant to be. Files over `max_bytes`, nested deeper than
    MAX_YAML_DEPTH or expanding (through aliases) to more than `max_nodes` values are
    refused before any value is built (files the tool writes itself, such as a sweep
    folder's `sweep.yaml`, may be read with larger bounds).
    """
    p = Path(path)
    if p.is_dir():
        raise ScenarioError(f"{p}: is a folder, not a file. Pass the path of a {kind} YAML file.")
    if not p.is_file():
        raise ScenarioError(f"{p}: no such file. Pass the path of a {kind} YAML file.")
    plain = (
        f"{kind.capitalize()} files are plain YAML data (mappings, lists, numbers, strings); "
        f"object tags and duplicate keys are refused."
    )
    try:
        with p.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise ScenarioError(
                f"{p}: is larger than {max_bytes // 1024:,} KiB, more than a {kind} file "
                f"holds. Is this the right file?"
            )
        text = raw.decode("utf-8")
        _check_expansion(text, max_nodes)
        data = yaml.load(text, Loader=_StrictSafeLoader)
    except _TooBig as exc:
        raise ScenarioError(
            f"{p}: not a usable {kind} file: it {exc}. {kind.capitalize()} files are plain "
            f"YAML data of at most {max_bytes // 1024:,} KiB, {MAX_YAML_DEPTH} levels of "
            f"nesting and {max_nodes:,} values with aliases expanded."
        ) from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        if mark is not None:
            where = _at(mark)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(
            f"{p}: not a valid {kind} file{where}: {str(problem)[:200]}. "
            f"{plain}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{p}: cannot read it as UTF-8 text ({exc.reason} at byte "
                            f"{exc.start}).") from None
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read it ({exc.strerror or exc}).") from None
    except ValueError as exc:
        # A scalar the safe constructor cannot build: an integer of more than 4,300 digits
        # (Python's limit on int(str)), a date such as 2024-13-45.
        raise ScenarioError(
            f"{p}: not a valid {kind} file: a value cannot be read "
            f"({str(exc)[:120]}). {plain}"
        ) from None
    if not isinstance(data, dict):
        raise ScenarioError(
            f"{p}: the top level of a {kind} file must be a mapping of fields, "
            f"got {type(data).__name__}."
        )
    return data


#: A file's stated answers (`analysis.claims`): metadata, dropped before validation.
CLAIMS_KEY = "claims"
#: Most scenario files a chain of `base:` files may hold (a loop is refused before this).
MAX_BASE_DEPTH = 10


def load_scenario(path: str | Path, *, _chain: tuple[Path, ...] = ()) -> Scenario:
    """Load and validate a scenario file. Raises `ScenarioError` with a one-paragraph message.

    A file may start from another: `base: other.yaml` (relative to the file's folder) loads
    that scenario, and every other key of the file is a dotted path set on it, with the merge
    rule of a sweep's `overrides` (`Scenario.with_overrides`): `rewards.policy: mint` changes
    the policy and keeps the base's budget, `rewards: {policy: mint}` replaces the whole
    section (its other fields take their defaults). Bases may chain; a loop is refused.
    """
    data = read_yaml(path)
    data.pop(CLAIMS_KEY, None)  # the file's stated answers (`analysis.claims`), not a field
    if "base" not in data:
        return parse_scenario(data, source=str(path))
    source = Path(path)
    here = source.expanduser().resolve()
    base = data.pop("base")
    if not isinstance(base, str) or not base.strip():
        raise ScenarioError(problem_text(
            str(path), "base", base, "a scenario file to start from, as a path relative to "
            f"this file's folder ({here.parent})"))
    base_path = (here.parent / base).resolve()
    if base_path in (*_chain, here):
        loop = " -> ".join(str(p) for p in (*_chain, here, base_path))
        raise ScenarioError(problem_text(
            str(path), "base", base, f"a scenario that does not lead back to itself; the "
            f"chain of base files loops: {loop}"))
    if len(_chain) + 1 >= MAX_BASE_DEPTH:
        raise ScenarioError(problem_text(
            str(path), "base", base, f"at most {MAX_BASE_DEPTH} files in a chain of base "
            "files"))
    if not base_path.is_file():
        raise ScenarioError(problem_text(
            str(path), "base", base, f"an existing scenario file; there is none at {base_path} "
            "(the path is relative to this file's folder)"))
    try:
        parent = load_scenario(base_path, _chain=(*_chain, here))
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: its base scenario is invalid: {exc}") from None
    for key in data:
        if not isinstance(key, str):
            raise ScenarioError(problem_text(
                str(path), str(key), data[key], "keys of a file with a base are field paths "
                "such as steps or rewards.policy"))
    scenario = parent.with_overrides(data, source=str(path))
    scenario._source = str(path)
    return scenario


def parse_scenario(data: dict[str, Any], *, source: str = "<scenario>") -> Scenario:
    """Validate a scenario mapping; `source` names it in error messages."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:  # validators' FieldProblems arrive wrapped in here
        raise ScenarioError(format_validation_error(exc, source, Scenario)) from None
    scenario._source = source
    return scenario


_FREEFORM = tuple({k.params_key for k in KINDS.values() if k.params_key})
_FLAT_SECTIONS = {k.section for k in KINDS.values() if k.params_key is None}
#: "clients[i].behaviour" -> its kind, for every key that names a component.
_NAMING_KEYS = {f"{k.section}.{k.tag}": k for k in KINDS.values()}


def _reset_switched_params(data: dict[str, Any], resolved: dict[str, Any], path: str,
                           value: Any, overrides: dict[str, Any]) -> None:
    """After `path` switched a component to `value`, drop the previous one's parameters
    from `data` unless an override sets them."""
    keys = path.split(".")
    kind = _NAMING_KEYS.get(re.sub(r"\.\d+(?=\.|$)", "[i]", path))
    if kind is None:
        return
    old: Any = resolved
    node: Any = data
    for key in keys[:-1]:
        k: Any = int(key) if key.isdigit() else key
        old, node = old[k], node[k]
    if old.get(kind.tag) == value:
        return  # not a switch
    prefix = ".".join(keys[:-1])
    kept = {p.removeprefix(f"{prefix}.") for p in overrides if p.startswith(f"{prefix}.")}
    if kind.params_key is not None:
        given = node.get(kind.params_key)
        if kind.params_key in kept:
            return  # the overrides give the new component's parameters
        if isinstance(given, dict):
            node[kind.params_key] = {
                name: v for name, v in given.items() if f"{kind.params_key}.{name}" in kept
            }
        else:
            node.pop(kind.params_key, None)
    else:
        for name in [n for n in node if n != kind.tag and n not in kept]:
            del node[name]


def _set_path(data: dict[str, Any], resolved: dict[str, Any], path: str, value: Any,
              source: str) -> None:
    """Set `a.b.0.c` in `data` (the mapping as written), checking the path against
    `resolved` (every field filled in) so that only existing fields can be set."""
    keys = path.split(".")
    node: Any = data
    full: Any = resolved
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        here = ".".join(keys[: i + 1])
        if isinstance(full, list):
            if not key.isdigit() or int(key) >= len(full):
                raise ScenarioError(problem_text(
                    source, path, ..., f"does not exist: {here} needs a list index from 0 to "
                    f"{len(full) - 1}"))
            k: Any = int(key)
        elif isinstance(full, dict):
            # Parameter mappings (and flat components) accept new keys; the component's
            # Params checks them.
            parent = re.sub(r"\.\d+(?=\.|$)", "[i]", ".".join(keys[:i]))
            free = i > 0 and (keys[i - 1] in _FREEFORM or parent in _FLAT_SECTIONS)
            if key not in full and not (last and free):
                raise ScenarioError(problem_text(
                    source, path, ..., f"does not exist in the scenario: {here!r} is not one "
                    f"of {sorted(full)}"))
            k = key
        else:
            raise ScenarioError(problem_text(
                source, path, ..., f"does not exist: {'.'.join(keys[:i])} is a value, not a "
                "section"))
        if last:
            node[k] = copy.deepcopy(value)
            return
        if isinstance(node, dict) and k not in node:
            # Left to its default in the file: a section starts empty (its fields keep their
            # defaults), a list starts as the resolved list.
            node[k] = copy.deepcopy(full[k]) if isinstance(full[k], list) else {}
        if isinstance(node[k], BaseModel):  # a scenario built in Python holds these
            node[k] = node[k].model_dump()
        node, full = node[k], full[k]
