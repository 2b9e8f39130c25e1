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
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DATASET_NAMES = ("digits", "breast_cancer", "wine", "synthetic", "cifar10")
BEHAVIOURS = ("honest", "free_rider", "noisy_labels", "label_flip", "small_data")
METHODS = ("data_size", "leave_one_out", "shapley_exact", "shapley_mc", "gtg_shapley", "cosine")
POLICIES = ("equal", "direct", "mint", "buyback", "dividend")
STRATEGIES = ("fundamental", "momentum", "mean_reversion", "noise", "manipulator")

#: Exact Shapley evaluates all 2^n coalitions; 2^16 = 65,536 models per round is the most
#: that stays practical on a CPU.
MAX_EXACT_SHAPLEY_CLIENTS = 16
#: Each client must hold at least this many training samples (a local epoch on fewer is noise).
MIN_SAMPLES_PER_CLIENT = 8
#: Training-set sizes of the bundled datasets (before the validation split).
BUNDLED_SIZES = {"digits": 1797, "breast_cancer": 569, "wine": 178}


class ScenarioError(ValueError):
    """A scenario or sweep file that cannot be run; `str()` is the user-facing paragraph."""


class _Spec(BaseModel):
    """Base of every section: unknown keys are errors (they are almost always typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Spec):
    """Which data the federation trains on (offline only: bundled, synthetic or a local file)."""

    name: Literal["digits", "breast_cancer", "wine", "synthetic", "cifar10"] = "digits"
    path: str | None = Field(None, description="local CIFAR-10 copy (directory or .tar.gz)")
    n_samples: int | None = Field(None, ge=50, description="subsample to this many samples")
    n_features: int = Field(20, ge=2, le=4096, description="synthetic only")
    n_classes: int = Field(4, ge=2, le=100, description="synthetic only")
    class_sep: float = Field(1.0, gt=0, le=10, description="synthetic only: larger is easier")


class PartitionSpec(_Spec):
    """How the training data is split among clients."""

    scheme: Literal["iid", "dirichlet", "quantity_skew"] = "dirichlet"
    alpha: float = Field(0.5, gt=0, le=1000, description="Dirichlet concentration")


class FLSpec(_Spec):
    """The federated-training sub-model (FedAvg; CPU or CUDA)."""

    dataset: DatasetSpec = DatasetSpec()
    partition: PartitionSpec = PartitionSpec()
    val_fraction: float = Field(0.2, ge=0.05, le=0.5)
    model: Literal["logreg", "mlp", "cnn"] = "mlp"
    hidden: int = Field(32, ge=1, le=4096)
    local_epochs: int = Field(1, ge=1, le=100)
    batch_size: int = Field(32, ge=1, le=4096)
    lr: float = Field(0.1, gt=0, le=10)
    metric: Literal["accuracy", "neg_loss"] = Field(
        "neg_loss",
        description="utility of the coalition game: validation accuracy, or the negative "
        "validation loss (default: continuous, so contribution methods can rank clients in "
        "rounds where accuracy moves by less than one validation sample; docs/model.md, "
        "'Submodels: contribution measurement')",
    )
    utility_samples: int | None = Field(
        None, ge=10, le=10_000_000,
        description="validation samples (a stratified subset drawn once from the seed) on "
                    "which coalition utilities are measured; null = the whole validation "
                    "split; the global model's accuracy always uses the whole split",
        json_schema_extra={"unit": "samples"},
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="where training and coalition evaluation run: auto = cuda when torch "
                    "sees a GPU, else cpu; config.yaml records the device actually used",
    )


class ContributionSpec(_Spec):
    """How each round's contributions are measured and turned into reward shares."""

    method: Literal[
        "data_size", "leave_one_out", "shapley_exact", "shapley_mc", "gtg_shapley", "cosine"
    ] = "gtg_shapley"
    params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="method-specific parameters (checked by the method)"
    )
    #: `clip`: s_i = max(c_i, 0) / sum (the design's default); `shift`: c_i - min(c) so the
    #: worst client gets nothing and order is kept even when every score is negative.
    negative: Literal["clip", "shift"] = "clip"
    #: When no client has a positive score (a round the method could not rank, e.g. GTG's
    #: between-round truncation): keep the budget in the federation's treasury (default: a
    #: round that cannot tell clients apart pays nobody, misbehaving ones included), or split
    #: it equally. The money table shows what was kept.
    zero_total: Literal["equal", "withhold"] = "withhold"


class BudgetSpec(_Spec):
    """USD paid by model buyers per round (display units)."""

    kind: Literal["constant", "schedule", "accuracy_gain"] = "constant"
    amount: float = Field(1000.0, ge=0, description="USD per round (constant)")
    schedule: list[float] = Field(
        default_factory=list, description="USD per round, in order; the last value repeats"
    )
    per_point: float = Field(
        100.0, ge=0, description="USD per accuracy point gained in the round (accuracy_gain)"
    )

    @model_validator(mode="after")
    def _schedule_given(self) -> BudgetSpec:
        if self.kind == "schedule" and not self.schedule:
            raise ValueError("kind 'schedule' needs a non-empty 'schedule' list of USD amounts")
        if any(x < 0 for x in self.schedule):
            raise ValueError("schedule amounts must be >= 0 USD")
        return self


class RewardsSpec(_Spec):
    """The distribution policy (docs/model.md, "Submodels: reward policies") and its budget."""

    policy: Literal["equal", "direct", "mint", "buyback", "dividend"] = "buyback"
    budget: BudgetSpec = BudgetSpec()
    mint_usd: Literal["pool", "client", "treasury"] = Field(
        "pool",
        description="mint only: where the buyers' USD (s_i x R per client and round) goes: "
        "'pool' = into the client's pool as liquidity at the pool's price (the federation "
        "owns the shares), 'client' = paid to the client as cash beside the minted tokens, "
        "'treasury' = kept by the federation",
    )


class CashOutSpec(_Spec):
    """When an FL client sells its own token for USD."""

    kind: Literal["hold", "sell_fraction", "usd_target"] = "hold"
    fraction: float = Field(0.1, gt=0, le=1, description="share of holdings sold per round")
    target_usd: float = Field(1000.0, ge=0, description="sell until USD balance reaches this")


class ClientGroup(_Spec):
    """A group of FL clients with the same behaviour."""

    count: int = Field(..., ge=1, le=1000)
    behaviour: Literal["honest", "free_rider", "noisy_labels", "label_flip", "small_data"] = (
        "honest"
    )
    behaviour_params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    #: Relative size of each client's data partition (small_data clients default to 0.25).
    size_weight: float | None = Field(None, gt=0, le=100)
    cash_out: CashOutSpec = CashOutSpec()
    max_slippage: float = Field(0.02, gt=0, le=1, description="max price impact per sale")


class MarketSpec(_Spec):
    """Genesis of the token markets (display units)."""

    fee_bps: int = Field(30, ge=0, le=1000, description="swap fee in basis points")
    opening_price: float = Field(1.0, gt=0, le=1e9, description="USD per token at genesis")
    initial_supply: float = Field(100_000.0, gt=0, le=1e15, description="tokens per client")
    pool_tokens: float = Field(50_000.0, gt=0, le=1e15, description="tokens seeded per pool")
    seeded_by: Literal["federation", "client"] = "federation"
    client_cash: float = Field(0.0, ge=0, le=1e15, description="USD each client starts with")
    round_continuation: float = Field(
        0.98, ge=0, le=0.999,
        description="the market's belief: probability that another FL round follows each "
        "round (per round, 0..0.999); fundamental investors expect p / (1 - p) more rounds "
        "whatever the run's length (0.98: 49 rounds)",
    )


class InvestorGroup(_Spec):
    """A group of third-party investors sharing one strategy."""

    strategy: Literal["fundamental", "momentum", "mean_reversion", "noise", "manipulator"]
    count: int = Field(..., ge=0, le=100_000)
    cash: float = Field(10_000.0, gt=0, le=1e15, description="USD each")
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    max_position: float = Field(0.5, gt=0, le=1, description="max share of wealth in one token")
    max_trade: float = Field(0.2, gt=0, le=1, description="max share of cash per buy")
    max_slippage: float = Field(0.02, gt=0, le=1, description="max price impact per trade")


class LiquidityGroup(_Spec):
    """A group of liquidity providers."""

    count: int = Field(..., ge=0, le=10_000)
    cash: float = Field(50_000.0, gt=0, le=1e15, description="USD each")
    allocation: float = Field(0.8, gt=0, le=1, description="share of cash put into pools")
    enter_step: int = Field(
        0, ge=0,
        description="step at which it deposits (steps); 0 = at genesis, buying the token side "
        "from the federation at the opening price (no swap, no price move); later it zaps: "
        "swaps half of each pool's budget into the token (recorded as zapped_usd)",
    )
    exit_rule: Literal["hold", "stop_loss", "horizon"] = "hold"
    stop_loss: float = Field(0.1, gt=0, lt=1, description="exit when PnL < -stop_loss")
    horizon: int = Field(200, ge=1, description="steps in the pools before exiting")


class Scenario(_Spec):
    """One simulation: the federation, the clients, the market and who trades on it."""

    name: str = Field("scenario", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    steps: int = Field(500, ge=1, le=1_000_000)
    round_every: int = Field(10, ge=1, le=100_000)
    fl: FLSpec = FLSpec()
    contribution: ContributionSpec = ContributionSpec()
    rewards: RewardsSpec = RewardsSpec()
    market: MarketSpec = MarketSpec()
    clients: list[ClientGroup] = Field(default_factory=lambda: [ClientGroup(count=10)])
    investors: list[InvestorGroup] = Field(default_factory=list)
    liquidity_providers: list[LiquidityGroup] = Field(default_factory=list)
    counterfactual: bool = Field(
        False,
        description="also run the twin (same scenario and seed, reward budget 0) and write "
        "it under counterfactual/ in the run folder; doubles the run time",
    )

    # -- derived -----------------------------------------------------------------------------

    @property
    def n_clients(self) -> int:
        return sum(g.count for g in self.clients)

    @property
    def n_rounds(self) -> int:
        """FL rounds in the run: one every `round_every` steps."""
        return self.steps // self.round_every

    # -- impossible combinations ---------------------------------------------------------------

    @model_validator(mode="after")
    def _feasible(self) -> Scenario:
        n = self.n_clients
        if self.contribution.method == "shapley_exact" and n > MAX_EXACT_SHAPLEY_CLIENTS:
            raise _FieldProblem(
                "contribution.method", "shapley_exact",
                f"exact Shapley evaluates all 2^n coalitions and is limited to "
                f"{MAX_EXACT_SHAPLEY_CLIENTS} clients; this scenario has {n} clients "
                f"(use gtg_shapley or shapley_mc)",
            )
        ds = self.fl.dataset
        size = ds.n_samples or BUNDLED_SIZES.get(ds.name)
        if size is not None:
            train = int(size * (1 - self.fl.val_fraction))
            if train < n * MIN_SAMPLES_PER_CLIENT:
                raise _FieldProblem(
                    "clients", n,
                    f"{n} clients need at least {n * MIN_SAMPLES_PER_CLIENT} training samples "
                    f"({MIN_SAMPLES_PER_CLIENT} each) but {ds.name} leaves {train} after the "
                    f"validation split",
                )
        if ds.name == "cifar10" and not ds.path:
            raise _FieldProblem(
                "fl.dataset.path", None,
                "cifar10 needs a local copy: set fl.dataset.path to the CIFAR-10 directory or "
                "its .tar.gz archive (binary or python version); nothing is downloaded",
            )
        if ds.name == "cifar10" and not Path(ds.path).exists():
            raise _FieldProblem(
                "fl.dataset.path", ds.path,
                "no such file or folder (a relative path is taken from the current directory); "
                "CIFAR-10 is never downloaded: point this field to a local copy of the python "
                "or binary version (the folder or its .tar.gz archive)",
            )
        if self.fl.model == "cnn" and ds.name != "cifar10":
            raise _FieldProblem(
                "fl.model", "cnn", "the CNN expects 32x32 colour images: use it with cifar10"
            )
        m = self.market
        if m.pool_tokens > m.initial_supply and m.seeded_by == "client":
            raise _FieldProblem(
                "market.pool_tokens", m.pool_tokens,
                f"a client seeding its own pool cannot deposit more than its initial supply "
                f"({m.initial_supply})",
            )
        need = m.pool_tokens * m.opening_price
        if m.seeded_by == "client" and m.client_cash < need:
            raise _FieldProblem(
                "market.client_cash", m.client_cash,
                f"clients seed their pools with pool_tokens x opening_price = {need:g} USD, "
                f"so client_cash must be at least that",
            )
        if self.steps < self.round_every:
            raise _FieldProblem(
                "steps", self.steps,
                f"at least one FL round must run: steps must be >= round_every "
                f"({self.round_every})",
            )
        return self

    # -- use ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario (every default filled in), JSON-safe."""
        return self.model_dump(mode="json")

    def with_overrides(self, overrides: dict[str, Any], *, source: str = "overrides") -> Scenario:
        """A new, revalidated scenario with dotted-path values replaced.

        Paths use dots for fields and integers for list items:
        ``{"rewards.policy": "mint", "investors.0.count": 50, "seed": 3}``.
        """
        data = self.to_dict()
        for path, value in overrides.items():
            _set_path(data, path, value, source)
        return parse_scenario(data, source=source)

    def twin(self) -> Scenario:
        """The counterfactual twin: the same scenario and seed with a reward budget of zero.

        Comparing a run with its twin attributes outcomes to the reward mechanism; the twin
        itself never runs a twin.
        """
        return self.with_overrides(
            {"rewards.budget": {"kind": "constant", "amount": 0.0}, "counterfactual": False},
            source=f"scenario {self.name!r} (counterfactual twin)",
        )

    def client_groups(self) -> list[tuple[str, ClientGroup]]:
        """Client ids (`c00`, `c01`, ...) paired with their group, in order."""
        width = max(2, len(str(self.n_clients - 1)))
        out: list[tuple[str, ClientGroup]] = []
        for group in self.clients:
            for _ in range(group.count):
                out.append((f"c{len(out):0{width}d}", group))
        return out


class _FieldProblem(ValueError):
    """Raised inside validators to name a field path other than the one being validated."""

    def __init__(self, path: str, value: Any, allowed: str) -> None:
        super().__init__(allowed)
        self.path, self.value, self.allowed = path, value, allowed


# -- loading ----------------------------------------------------------------------------------


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that also refuses duplicate keys (the later one would silently win)."""


def _no_duplicates(loader: _StrictSafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates
)


def read_yaml(path: str | Path, *, kind: str = "scenario") -> dict[str, Any]:
    """Read a YAML mapping safely (no object tags, no duplicate keys).

    Every failure is a `ScenarioError` naming the file; `kind` ("scenario", "sweep") names
    what the file was meant to be.
    """
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"{p}: no such file. Pass the path of a {kind} YAML file.")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_StrictSafeLoader)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(
            f"{p}: not a valid {kind} file{where}: {problem}. {kind.capitalize()} files are "
            f"plain YAML data (mappings, lists, numbers, strings); object tags and duplicate "
            f"keys are refused."
        ) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ScenarioError(f"{p}: cannot read it as UTF-8 text ({exc}).") from None
    if not isinstance(data, dict):
        raise ScenarioError(
            f"{p}: the top level of a {kind} file must be a mapping of fields, "
            f"got {type(data).__name__}."
        )
    return data


def check_components(scenario: Scenario, source: str) -> None:
    """Build what the schema cannot check alone: each investor group's strategy parameters.

    Raises `ScenarioError` naming `source` and the field. (Imported lazily: the strategies
    live with the agents, and validating a file should not need more than this.)
    """
    from abm.agents.strategies import make_strategy

    for i, group in enumerate(scenario.investors):
        try:
            make_strategy(group.strategy, **group.params)
        except ValueError as exc:
            raise ScenarioError(
                _problem_text(source, f"investors[{i}].params", group.params, str(exc))
            ) from None


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file. Raises `ScenarioError` with a one-paragraph message."""
    return parse_scenario(read_yaml(path), source=str(path))


def parse_scenario(data: dict[str, Any], *, source: str = "<scenario>") -> Scenario:
    """Validate a scenario mapping; `source` names it in error messages."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:  # validators' _FieldProblem arrive wrapped in here
        raise ScenarioError(format_validation_error(exc, source)) from None


def format_validation_error(exc: ValidationError, source: str) -> str:
    """Turn pydantic's error list into one paragraph: file, field path, value, allowed."""
    parts = []
    for err in exc.errors(include_url=False):
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _FieldProblem):
            parts.append(_part(ctx_err.path, ctx_err.value, ctx_err.allowed))
            continue
        path = _loc_to_path(err["loc"])
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {path!s} (check the spelling; unknown keys are refused)")
            continue
        if err["type"] == "missing":
            parts.append(f"{path} is required")
            continue
        allowed = _allowed_text(err)
        parts.append(_part(path, value, allowed))
    n = len(parts)
    head = f"{source}: {'a problem' if n == 1 else f'{n} problems'}: "
    return head + "; ".join(parts) + "."


def _problem_text(source: str, path: str, value: Any, allowed: str) -> str:
    return f"{source}: a problem: {_part(path, value, allowed)}."


def _part(path: str, value: Any, allowed: str) -> str:
    if isinstance(value, dict | list):
        shown = json.dumps(value, default=str)
        if len(shown) > 80:
            shown = shown[:77] + "..."
    else:
        shown = repr(value)
    return f"{path or '(top level)'} = {shown}: {allowed}"


def _allowed_text(err: dict[str, Any]) -> str:
    msg = err["msg"]
    if err["type"] == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        return f"allowed values are {expected}"
    msg = re.sub(r"^Value error, ", "", msg)
    return msg[0].lower() + msg[1:] if msg else msg


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(
            ("function-", "literal[")
        ):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


_FREEFORM = ("params", "behaviour_params")


def _set_path(data: dict[str, Any], path: str, value: Any, source: str) -> None:
    """Set `a.b.0.c` inside nested dicts/lists, refusing paths that do not exist."""
    keys = path.split(".")
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        here = ".".join(keys[: i + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ScenarioError(
                    f"{source}: a problem: {path} does not exist: {here} needs a list index "
                    f"from 0 to {len(node) - 1}."
                )
            k: Any = int(key)
        elif isinstance(node, dict):
            # Free-form parameter mappings accept new keys; the component checks them.
            if key not in node and not (last and i > 0 and keys[i - 1] in _FREEFORM):
                raise ScenarioError(
                    f"{source}: a problem: {path} does not exist in the scenario: {here!r} is "
                    f"not one of {sorted(node)}."
                )
            k = key
        else:
            raise ScenarioError(
                f"{source}: a problem: {path} does not exist: {'.'.join(keys[:i])} is a value, "
                f"not a section."
            )
        if last:
            node[k] = copy.deepcopy(value)
        else:
            node = node[k]
