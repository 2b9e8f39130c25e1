"""abm.amm.ledger: balances, supply and the exact accounting invariant."""

import pytest

from abm.amm import InsufficientBalance, InvariantViolation, Ledger, LedgerError


@pytest.fixture
def ledger():
    ledger = Ledger()
    ledger.mint("alice", "USD", 100)
    ledger.mint("bob", "USD", 50)
    ledger.mint("alice", "TKN", 7)
    return ledger


def state(ledger):
    return {a: ledger.holders(a) for a in ledger.assets()}, {
        a: (ledger.minted(a), ledger.burned(a)) for a in ledger.assets()
    }


def test_mint_credits_and_counts_supply(ledger):
    assert ledger.balance("alice", "USD") == 100
    assert ledger.supply("USD") == 150
    assert ledger.minted("USD") == 150
    assert ledger.burned("USD") == 0
    ledger.check()


def test_transfer_moves_balance_and_keeps_supply(ledger):
    ledger.transfer("alice", "carol", "USD", 30)
    assert ledger.balance("alice", "USD") == 70
    assert ledger.balance("carol", "USD") == 30
    assert ledger.supply("USD") == 150
    ledger.check()


def test_burn_debits_and_counts_burned(ledger):
    ledger.burn("bob", "USD", 20)
    assert ledger.balance("bob", "USD") == 30
    assert ledger.burned("USD") == 20
    assert ledger.supply("USD") == 130
    ledger.check()


def test_holders_lists_only_non_zero_balances(ledger):
    ledger.transfer("bob", "alice", "USD", 50)
    assert ledger.holders("USD") == {"alice": 150}
    assert ledger.holders("nothing") == {}


def test_holders_is_a_copy(ledger):
    ledger.holders("USD")["mallory"] = 10**9
    assert ledger.balance("mallory", "USD") == 0
    ledger.check()


def test_balances_lists_every_asset_an_account_holds(ledger):
    assert ledger.balances("alice") == {"USD": 100, "TKN": 7}
    assert ledger.balances("nobody") == {}


def test_assets_in_order_of_first_mint(ledger):
    assert ledger.assets() == ["USD", "TKN"]


@pytest.mark.parametrize(
    "operation",
    [
        lambda ledger: ledger.transfer("bob", "alice", "USD", 51),
        lambda ledger: ledger.transfer("carol", "alice", "USD", 1),
        lambda ledger: ledger.transfer("alice", "bob", "XYZ", 1),
        lambda ledger: ledger.burn("alice", "TKN", 8),
        lambda ledger: ledger.burn("nobody", "USD", 1),
    ],
)
def test_insufficient_balance_raises_and_changes_nothing(ledger, operation):
    before = state(ledger)
    with pytest.raises(InsufficientBalance) as info:
        operation(ledger)
    assert isinstance(info.value, LedgerError)
    assert state(ledger) == before
    ledger.check()


def test_insufficient_balance_names_account_asset_and_amounts(ledger):
    with pytest.raises(InsufficientBalance) as info:
        ledger.transfer("bob", "alice", "USD", 51)
    e = info.value
    assert (e.account, e.asset, e.balance, e.amount) == ("bob", "USD", 50, 51)


@pytest.mark.parametrize("amount", [-1, 1.0, 2.5, True, None, "3"])
def test_amounts_must_be_non_negative_ints(ledger, amount):
    before = state(ledger)
    for operation in (
        lambda: ledger.mint("alice", "USD", amount),
        lambda: ledger.burn("alice", "USD", amount),
        lambda: ledger.transfer("alice", "bob", "USD", amount),
    ):
        with pytest.raises(ValueError):
            operation()
    assert state(ledger) == before


@pytest.mark.parametrize("name", ["", None, 3])
def test_accounts_and_assets_must_be_non_empty_strings(ledger, name):
    with pytest.raises(ValueError):
        ledger.mint(name, "USD", 1)
    with pytest.raises(ValueError):
        ledger.mint("alice", name, 1)
    with pytest.raises(ValueError):
        ledger.transfer("alice", name, "USD", 1)


def test_zero_amounts_and_self_transfers_change_nothing(ledger):
    before = state(ledger)
    ledger.transfer("alice", "alice", "USD", 100)
    ledger.transfer("alice", "bob", "USD", 0)
    ledger.burn("alice", "USD", 0)
    assert state(ledger)[0] == before[0]
    ledger.check()


def test_check_catches_a_balance_written_past_the_ledger(ledger):
    ledger._book("USD")["mallory"] = 1
    with pytest.raises(InvariantViolation, match="off by 1"):
        ledger.check()


def test_check_catches_a_stored_zero_or_negative_balance(ledger):
    ledger._book("USD")["alice"] -= 100
    with pytest.raises(InvariantViolation):
        ledger.check()


def test_check_catches_a_non_int_balance(ledger):
    ledger._book("TKN")["alice"] = 7.0
    with pytest.raises(InvariantViolation):
        ledger.check()


def test_invariant_violation_is_not_a_refusal():
    # Code that catches refused operations must not swallow a broken invariant.
    assert not issubclass(InvariantViolation, LedgerError)


def test_the_live_book_follows_every_change_and_cannot_be_written():
    ledger = Ledger()
    book = ledger.live("USD")
    ledger.mint("a", "USD", 5)
    ledger.transfer("a", "b", "USD", 5)
    assert dict(book) == {"b": 5} and book.get("a", 0) == 0
    with pytest.raises(TypeError):
        book["a"] = 1  # type: ignore[index]
