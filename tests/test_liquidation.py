"""Market.liquidation_value: what an account would hold in USD after selling everything alone.

Exact vectors worked by hand from the Uniswap V2 formulas, the identity with actually
executing the sale on a copy of the ledger, and `liquidation_value <= value` (spot) under
random pools and trades (hypothesis).
"""

from __future__ import annotations

import copy

from hypothesis import example, given, settings
from hypothesis import strategies as st

from abm.amm import MINIMUM_LIQUIDITY, ONE, Ledger, LedgerError, Market, PoolError, pro_rata
from abm.amm.market import MarkBook


def _market(pools: dict[str, tuple[int, int]], fee_bps: int = 30) -> Market:
    """A market whose pools are seeded by account `seed` with (tokens, USD) base units."""
    ledger = Ledger()
    market = Market(ledger, fee_bps=fee_bps)
    for token, (reserve_token, reserve_usd) in pools.items():
        pool = market.create_pool(token)
        ledger.mint("seed", token, reserve_token)
        ledger.mint("seed", "USD", reserve_usd)
        pool.add_liquidity("seed", reserve_token, reserve_usd)
    return market


def _sell_everything(market: Market, account: str) -> int:
    """Execute what `liquidation_value` describes, on a copy: burn shares, sell tokens."""
    market = copy.deepcopy(market)
    ledger = market.ledger
    for token, pool in market.pools.items():
        shares = ledger.balance(account, pool.lp_asset)
        reserve_token, reserve_usd = pool.reserves
        if (shares and shares * reserve_token // pool.total_shares
                and shares * reserve_usd // pool.total_shares):  # else the pool refuses
            pool.remove_liquidity(account, shares)
        amount = ledger.balance(account, token)
        if amount and pool.quote_exact_in(token, amount):
            pool.swap_exact_in(account, token, amount)
    return ledger.balance(account, "USD")


def test_cash_only_is_worth_its_cash():
    market = _market({"A": (100 * ONE, 200 * ONE)})
    market.ledger.mint("alice", "USD", 7 * ONE)
    assert market.liquidation_value("alice") == 7 * ONE == market.value("alice")


def test_tokens_fetch_get_amount_out_on_the_pool_with_its_fee():
    # 10 tokens into (100 tokens, 200 USD) at 0.3 %: out = 10*9970*200 // (100*10000 + 10*9970)
    # in base units = 18.132217877602982631 USD; at spot they are marked 20 USD.
    market = _market({"A": (100 * ONE, 200 * ONE)})
    market.ledger.mint("alice", "A", 10 * ONE)
    expected = 10 * ONE * 9970 * 200 * ONE // (100 * ONE * 10_000 + 10 * ONE * 9970)
    assert expected == 18_132_217_877_602_982_631
    assert market.liquidation_value("alice") == expected
    assert market.value("alice") == 20 * ONE


def test_lp_shares_are_burned_first_then_the_returned_tokens_are_sold():
    # The seed owns every share but the locked MINIMUM_LIQUIDITY: burning returns all but a
    # sliver of each reserve; selling the tokens into the sliver fetches almost nothing.
    market = _market({"A": (100 * ONE, 200 * ONE)})
    pool = market.pools["A"]
    shares = market.ledger.balance("seed", pool.lp_asset)
    assert shares == pool.total_shares - MINIMUM_LIQUIDITY
    token_out = shares * 100 * ONE // pool.total_shares
    base_out = shares * 200 * ONE // pool.total_shares
    rest_t, rest_b = 100 * ONE - token_out, 200 * ONE - base_out
    sale = token_out * 9970 * rest_b // (rest_t * 10_000 + token_out * 9970)
    assert market.liquidation_value("seed") == base_out + sale
    # The spot mark of the same shares: 2 x shares x 200 USD / total (just under 400 USD).
    assert market.value("seed") == 2 * shares * 200 * ONE // pool.total_shares
    assert market.liquidation_value("seed") < market.value("seed")


def test_each_pool_is_sold_on_its_own_and_nothing_changes():
    market = _market({"A": (100 * ONE, 200 * ONE), "B": (50 * ONE, 25 * ONE)})
    market.ledger.mint("alice", "A", 10 * ONE)
    market.ledger.mint("alice", "B", 5 * ONE)
    market.ledger.mint("alice", "USD", 1 * ONE)
    a = 10 * ONE * 9970 * 200 * ONE // (100 * ONE * 10_000 + 10 * ONE * 9970)
    b = 5 * ONE * 9970 * 25 * ONE // (50 * ONE * 10_000 + 5 * ONE * 9970)
    before = market.ledger.balances("alice"), market.pools["A"].reserves
    assert market.liquidation_value("alice") == ONE + a + b
    assert (market.ledger.balances("alice"), market.pools["A"].reserves) == before


def test_without_a_fee_a_sale_still_fills_below_spot():
    market = _market({"A": (100 * ONE, 200 * ONE)}, fee_bps=0)
    market.ledger.mint("alice", "A", 100 * ONE)
    # Selling a whole reserve's worth halves the price on the way: 100 tokens fetch 100 USD.
    assert market.liquidation_value("alice") == 100 * ONE
    assert market.value("alice") == 200 * ONE


@settings(max_examples=150, deadline=None)
@given(
    reserves=st.lists(st.tuples(st.integers(10**6, 10**27), st.integers(10**6, 10**27)),
                      min_size=1, max_size=3),
    fee_bps=st.sampled_from([0, 5, 30, 100]),
    lp_fraction=st.floats(0.0, 1.0),
    holdings=st.lists(st.integers(0, 10**27), min_size=3, max_size=3),
    cash=st.integers(0, 10**24),
    trades=st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.integers(1, 10**26)),
                    max_size=6),
)
def test_liquidation_value_is_what_selling_fetches_and_never_above_spot(
    reserves, fee_bps, lp_fraction, holdings, cash, trades
):
    tokens = [f"T{i}" for i in range(len(reserves))]
    market = _market(dict(zip(tokens, reserves, strict=True)), fee_bps=fee_bps)
    ledger = market.ledger
    ledger.mint("alice", "USD", cash)
    for token, amount in zip(tokens, holdings, strict=False):
        ledger.mint("alice", token, amount)
        pool = market.pools[token]
        held = ledger.balance("seed", pool.lp_asset)
        give = min(held, int(held * lp_fraction))  # float rounding may exceed what is held
        if give:
            ledger.transfer("seed", "alice", pool.lp_asset, give)
    for index, buy, amount in trades:  # someone else moves the prices first
        token = tokens[index % len(tokens)]
        asset = "USD" if buy else token
        ledger.mint("bob", asset, amount)
        if market.pools[token].quote_exact_in(asset, amount):
            market.pools[token].swap_exact_in("bob", asset, amount)
    value = market.liquidation_value("alice")
    assert value <= market.value("alice")
    assert value == _sell_everything(market, "alice")


def test_a_group_selling_together_fetches_less_than_its_members_alone():
    market = _market({"A": (100 * ONE, 200 * ONE)})
    market.ledger.mint("alice", "A", 10 * ONE)
    market.ledger.mint("bob", "A", 10 * ONE)
    alone = 10 * ONE * 9970 * 200 * ONE // (100 * ONE * 10_000 + 10 * ONE * 9970)
    together = 20 * ONE * 9970 * 200 * ONE // (100 * ONE * 10_000 + 20 * ONE * 9970)
    assert market.liquidation_value("alice") == market.liquidation_value("bob") == alone
    assert market.group_liquidation_value(["alice", "bob"]) == together < 2 * alone
    assert market.group_liquidation_value(["alice"]) == alone
    assert market.group_liquidation_value(["alice", "alice"]) == alone  # a set of accounts


@settings(max_examples=100, deadline=None)
@given(
    reserves=st.lists(st.tuples(st.integers(10**6, 10**27), st.integers(10**6, 10**27)),
                      min_size=1, max_size=3),
    fee_bps=st.sampled_from([0, 5, 30, 100]),
    positions=st.lists(  # per account: cash, then per pool (tokens, share of seed's LP)
        st.tuples(st.integers(0, 10**24),
                  st.lists(st.tuples(st.integers(0, 10**27), st.floats(0.0, 0.3)),
                           min_size=3, max_size=3)),
        min_size=1, max_size=5),
    drain=st.booleans(),
)
def test_mark_accounts_equals_value_breakdown_and_liquidation_value_per_account(
    reserves, fee_bps, positions, drain
):
    """The one-pass valuation of many accounts (the model's per-step marks) is the
    per-account reference, exactly, including dust shares, an account holding nothing and
    a drained pool."""
    tokens = [f"T{i}" for i in range(len(reserves))]
    market = _market(dict(zip(tokens, reserves, strict=True)), fee_bps=fee_bps)
    ledger = market.ledger
    accounts = [f"a{k}" for k in range(len(positions))] + ["nobody"]
    for account, (cash, per_pool) in zip(accounts, positions, strict=False):
        if cash:
            ledger.mint(account, "USD", cash)
        for token, (amount, lp_fraction) in zip(tokens, per_pool, strict=False):
            if amount:
                ledger.mint(account, token, amount)
            give = int(ledger.balance("seed", market.pools[token].lp_asset) * lp_fraction)
            if give:
                ledger.transfer("seed", account, market.pools[token].lp_asset, give)
    if drain:  # the seed withdraws what it still holds of the first pool
        pool = market.pools[tokens[0]]
        left = ledger.balance("seed", pool.lp_asset)
        if left and left * pool.reserves[0] // pool.total_shares:
            pool.remove_liquidity("seed", left)
    marks = market.mark_accounts(accounts)
    for k, account in enumerate(accounts):
        parts = market.value_breakdown(account)
        assert (marks.usd[k], marks.tokens[k], marks.lp[k]) == (
            parts["usd"], parts["tokens"], parts["lp"])
        assert marks.if_sold[k] == market.liquidation_value(account)


# -- joint liquidation: everyone sells at once, and the values add up ----------------------


def test_joint_liquidation_sells_every_token_in_one_sale_then_redeems_the_liquidity():
    """Exact vector: alice holds 10 tokens, bob 30 and 1/4 of the LP shares (seed the rest).
    One sale of 40 tokens; alice gets 1/4 of it, bob 3/4 (pro rata by tokens); then bob's
    shares redeem their part of the USD left; the tokens redeemed count 0."""
    market = _market({"A": (100 * ONE, 200 * ONE)})
    ledger, pool = market.ledger, market.pools["A"]
    ledger.mint("alice", "A", 10 * ONE)
    ledger.mint("bob", "A", 30 * ONE)
    quarter = ledger.balance("seed", pool.lp_asset) // 4
    ledger.transfer("seed", "bob", pool.lp_asset, quarter)
    sale = 40 * ONE * 9970 * 200 * ONE // (100 * ONE * 10_000 + 40 * ONE * 9970)
    redeemed = quarter * (200 * ONE - sale) // pool.total_shares
    got = market.joint_liquidation(["alice", "bob"])
    alice = sale * 10 // 40
    assert got.values["alice"] + got.values["bob"] == sale + redeemed
    assert got.values["alice"] in (alice, alice + 1)  # the remainder goes to one of them
    assert got.values["bob"] - redeemed in (sale * 30 // 40, sale * 30 // 40 + 1)
    assert got.left_in_pools == 200 * ONE - sale - redeemed
    # selling at once fetches less than each sale alone
    assert got.values["alice"] < market.liquidation_value("alice")
    assert got.values["bob"] < market.liquidation_value("bob")


def test_pro_rata_splits_exactly_whatever_the_order():
    assert pro_rata(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert pro_rata(10, {"c": 1, "b": 1, "a": 1}) == {"a": 4, "b": 3, "c": 3}
    assert pro_rata(7, {"a": 0, "b": 0}) == {"a": 0, "b": 0}
    assert pro_rata(0, {"a": 3}) == {"a": 0}


def test_dust_shares_fetch_nothing_in_a_joint_exit_as_alone():
    """One LP share of a pool at 1e12 USD per token would burn into 0 tokens and 1e6 USD
    base units: the pool refuses that burn, so the share fetches 0 alone and jointly, and
    its USD stays in the pool."""
    market = _market({"T": (10**6, 10**18)})
    market.ledger.transfer("seed", "p", market.pools["T"].lp_asset, 1)
    got = market.joint_liquidation(["p"])
    assert market.liquidation_value("p") == 0
    assert got.values == {"p": 0}
    assert got.left_in_pools == 10**18


def _dust_before_the_sale(market, account) -> bool:
    """Whether `account` holds LP shares of a pool that would refuse to burn them now."""
    for pool in market.pools.values():
        shares = market.ledger.balance(account, pool.lp_asset)
        reserve_token, reserve_base = pool.reserves
        if shares and not (shares * reserve_token // pool.total_shares
                           and shares * reserve_base // pool.total_shares):
            return True
    return False


@settings(max_examples=150, deadline=None)
@given(
    reserves=st.lists(st.tuples(st.integers(10**6, 10**27), st.integers(10**6, 10**27)),
                      min_size=1, max_size=3),
    holdings=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 10**26),
                                st.floats(0, 0.5)), max_size=12),
    usd=st.lists(st.integers(0, 10**24), min_size=4, max_size=4),
)
@example(  # one LP share of a pool at 1e12 USD per token: a burn would pay 0 tokens
    reserves=[(10**6, 1_000_000_002_000_000_001)], holdings=[(0, 0, 0, 1e-12)], usd=[0] * 4)
def test_joint_liquidation_adds_up_exactly(reserves, holdings, usd):
    """For any holdings: the values of all holders plus what the pools keep is the USD they
    hold plus every pool's USD reserve, to the base unit; each is at most its sale alone (up
    to rounding: a base unit per pool)."""
    tokens = [f"T{i}" for i in range(len(reserves))]
    market = _market(dict(zip(tokens, reserves, strict=True)))
    ledger = market.ledger
    people = [f"p{i}" for i in range(4)]
    for person, amount in zip(people, usd, strict=True):
        if amount:
            ledger.mint(person, "USD", amount)
    for who, index, amount, lp_fraction in holdings:
        token = tokens[index % len(tokens)]
        if amount:
            ledger.mint(people[who], token, amount)
        pool = market.pools[token]
        give = int(ledger.balance("seed", pool.lp_asset) * lp_fraction)
        if give:
            ledger.transfer("seed", people[who], pool.lp_asset, give)
    everyone = [*people, "seed"]
    got = market.joint_liquidation(everyone)
    held = sum(ledger.balance(a, "USD") for a in everyone)
    reserves_usd = sum(p.reserves[1] for p in market.pools.values())
    assert sum(got.values.values()) + got.left_in_pools == held + reserves_usd
    for account in everyone:
        if _dust_before_the_sale(market, account):
            # shares the pool refuses alone become redeemable once the others' sales have
            # grown its token reserve: the joint exit can then fetch more than a sale alone
            continue
        # at most its sale alone, up to one base unit per pool: floors do not add up (two
        # 1-unit sales into (1e6, 1e6) fetch 0 each, one 2-unit sale fetches 1)
        assert got.values[account] <= market.liquidation_value(account) + len(tokens)
    # any partition adds up: the values are per account
    assert set(got.values) == set(everyone)
    # read from either side of each book (holders or accounts, whichever is smaller): the
    # order of the accounts and accounts holding nothing change nothing
    assert market.joint_liquidation(everyone[::-1]) == got
    idle = [f"idle{i}" for i in range(20)]
    padded = market.joint_liquidation([*idle, *everyone])
    assert padded.left_in_pools == got.left_in_pools
    assert padded.values == {**dict.fromkeys(idle, 0), **got.values}


def test_liquidation_values_is_liquidation_value_per_account_by_either_path():
    """Few accounts: one at a time; many accounts over few holdings each: one pass over the
    ledger (`mark_accounts`). Both give each account's `liquidation_value`, exactly."""
    market = _market({f"T{i}": (10**24 + i, 3 * 10**23 + 7 * i) for i in range(6)})
    ledger = market.ledger
    people = [f"p{i}" for i in range(40)]
    for k, person in enumerate(people):
        ledger.mint(person, "USD", 10**18 * k)
        ledger.mint(person, f"T{k % 6}", 10**20 * (k + 1))
        if k % 5 == 0:
            ledger.transfer("seed", person, market.pools[f"T{k % 6}"].lp_asset, 10**18)
    for accounts in (people[:1], people, [*people, "seed"]):
        expected = [market.liquidation_value(a) for a in accounts]
        assert market.liquidation_values(accounts) == expected
    # the 41 accounts over 13 assets read more than the ledger's holdings: the pass wins
    assert len(people) * len(ledger.assets()) > ledger.holdings()


# -- incremental marks: only what changed since the last mark, equal to the full pass ------

_PEOPLE = ["a0", "a1", "a2", "seed"]
_operations = st.one_of(
    st.tuples(st.just("swap"), st.integers(0, 3), st.integers(0, 2), st.booleans(),
              st.integers(1, 10**23)),
    st.tuples(st.just("mint"), st.integers(0, 3), st.integers(0, 2), st.booleans(),
              st.integers(1, 10**24)),
    st.tuples(st.just("burn"), st.integers(0, 3), st.integers(0, 2), st.booleans(),
              st.integers(1, 10**24)),
    st.tuples(st.just("transfer"), st.integers(0, 3), st.integers(0, 2), st.booleans(),
              st.integers(1, 10**24), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("add"), st.integers(0, 3), st.integers(0, 2), st.integers(1, 10**24)),
    st.tuples(st.just("remove"), st.integers(0, 3), st.integers(0, 2), st.floats(0.0, 1.0)),
    st.just(("mark",)),
)


def _apply(market: Market, op: tuple) -> None:
    """One ledger or pool operation of `_operations` (a refused one changes nothing)."""
    ledger, kind = market.ledger, op[0]
    if kind == "mark":
        return
    account, pool = _PEOPLE[op[1]], market.pools[f"T{op[2]}"]
    try:
        if kind == "swap":
            pool.swap_exact_in(account, "USD" if op[3] else pool.token, op[4])
        elif kind in ("mint", "burn"):
            asset = "USD" if op[3] else pool.token
            if kind == "mint":
                ledger.mint(account, asset, op[4])
            else:
                ledger.burn(account, asset, min(op[4], ledger.balance(account, asset)))
        elif kind == "transfer":  # the token, or LP shares
            asset = pool.lp_asset if op[6] else pool.token
            amount = min(op[4], ledger.balance(account, asset))
            if amount:
                ledger.transfer(account, _PEOPLE[op[5]], asset, amount)
        elif kind == "add":
            ledger.mint(account, pool.token, op[3])
            ledger.mint(account, "USD", op[3])
            pool.add_liquidity(account, op[3], op[3])
        else:
            shares = int(ledger.balance(account, pool.lp_asset) * op[3])
            if shares:
                pool.remove_liquidity(account, shares)
    except (LedgerError, PoolError):
        pass


@settings(max_examples=150, deadline=None)
@given(reserves=st.lists(st.tuples(st.integers(10**6, 10**27), st.integers(10**6, 10**27)),
                         min_size=3, max_size=3),
       fee_bps=st.sampled_from([0, 30, 100]),
       full_above=st.sampled_from([0.0, 0.6, 1.0]),
       operations=st.lists(_operations, max_size=40))
def test_incremental_marks_equal_the_full_pass(reserves, fee_bps, full_above, operations):
    """`MarkBook.mark` after any sequence of swaps, mints, burns, transfers of tokens and
    LP shares, deposits and withdrawals (drained pools and dust shares included) is
    `Market.mark_accounts` of the same accounts, exactly; with every threshold between a
    plain pass and the changed pools only (`full_above`: 0 a plain pass whenever anything
    changed, 1 always the differences). An account the ledger has never seen counts 0."""
    market = _market({f"T{i}": r for i, r in enumerate(reserves)}, fee_bps=fee_bps)
    accounts = [*_PEOPLE, "nobody"]
    book = MarkBook(market, accounts)
    book.FULL_ABOVE = full_above
    assert book.mark() == market.mark_accounts(accounts)
    for op in operations:
        _apply(market, op)
        if op[0] == "mark" or len(operations) < 10:
            assert book.mark() == market.mark_accounts(accounts)
    assert book.mark() == market.mark_accounts(accounts)


def test_incremental_marks_recompute_only_the_pools_that_changed():
    """Ten pools, a trade in one of them: the next mark recomputes that pool's holders
    only; a transfer of tokens with no trade: the two accounts it moved between only."""
    market = _market({f"T{i}": (10**24 + i, 3 * 10**23) for i in range(10)})
    ledger = market.ledger
    people = [f"p{i}" for i in range(5)]
    for person in people:
        ledger.mint(person, "USD", 10**21)
        for i in range(10):
            ledger.mint(person, f"T{i}", 10**20)
    book = MarkBook(market, [*people, "seed"])
    book.mark()  # every pool is new: a plain pass
    assert book.mark() == market.mark_accounts([*people, "seed"])
    assert book.recomputed == 60  # the contributions, built once: 6 holders x 10 pools
    assert book.mark() == market.mark_accounts([*people, "seed"])
    assert book.recomputed == 0  # nothing changed
    market.pools["T3"].swap_exact_in("p0", "USD", 10**19)
    assert book.mark() == market.mark_accounts([*people, "seed"])
    assert book.recomputed == 6  # the five holders of T3 and the seed's LP shares
    ledger.transfer("p1", "p2", "T7", 10**19)
    assert book.mark() == market.mark_accounts([*people, "seed"])
    assert book.recomputed == 2
