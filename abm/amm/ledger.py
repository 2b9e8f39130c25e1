"""The one ledger that holds every balance: agents, pools, the federation, the zero address.

Balances are integer base units, stored per asset as `{account: balance}` with only non-zero
entries, so `holders(asset)` never scans accounts that hold something else. Every mint and burn
is counted, and `check()` proves, for every asset, `sum(balances) == minted - burned` exactly.
A failed check raises `InvariantViolation`; nothing is ever patched.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from abm.amm.math import check_amount


class LedgerError(Exception):
    """The ledger refused an operation; no balance changed."""


class InsufficientBalance(LedgerError):
    """`account` holds `balance` of `asset`, less than the `amount` asked for."""

    def __init__(self, account: str, asset: str, balance: int, amount: int) -> None:
        super().__init__(f"{account} holds {balance} {asset}, needs {amount}")
        self.account = account
        self.asset = asset
        self.balance = balance
        self.amount = amount


class InvariantViolation(RuntimeError):
    """An accounting invariant failed. This is a bug, never a refused operation: it derives from
    RuntimeError rather than LedgerError so that code catching refusals does not swallow it."""


def _check_name(name: str, what: str) -> None:
    if type(name) is not str or not name:
        raise ValueError(f"{what} must be a non-empty str, got {name!r}")


class Ledger:
    """Balances per (account, asset) in integer base units.

    Accounts and assets are non-empty `str`; amounts are Python `int >= 0` (`ValueError`
    otherwise). `InsufficientBalance` leaves every balance unchanged.
    """

    __slots__ = ("_books", "_burned", "_minted")

    def __init__(self) -> None:
        self._books: dict[str, dict[str, int]] = {}  # asset -> account -> balance (> 0)
        self._minted: dict[str, int] = {}
        self._burned: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"Ledger({len(self._minted)} assets)"

    # -- reading ---------------------------------------------------------------------------

    def balance(self, account: str, asset: str) -> int:
        book = self._books.get(asset)
        return book.get(account, 0) if book else 0

    def live(self, asset: str) -> Mapping[str, int]:
        """The live, read-only `{account: balance}` mapping of `asset` (non-zero balances):
        for hot read paths that look up many balances of one asset (`.get(account, 0)`)."""
        return MappingProxyType(self._book(asset))

    def holders(self, asset: str) -> dict[str, int]:
        """Every account with a non-zero balance of `asset` (a copy)."""
        return dict(self._books.get(asset, ()))

    def balances(self, account: str) -> dict[str, int]:
        """Every asset `account` holds a non-zero amount of."""
        return {asset: book[account] for asset, book in self._books.items() if account in book}

    def holdings(self) -> int:
        """How many non-zero balances there are, over every asset (the size of a pass over
        the whole ledger)."""
        return sum(len(book) for book in self._books.values())

    def assets(self) -> list[str]:
        """Every asset ever minted, in order of first mint."""
        return list(self._minted)

    def minted(self, asset: str) -> int:
        return self._minted.get(asset, 0)

    def burned(self, asset: str) -> int:
        return self._burned.get(asset, 0)

    def supply(self, asset: str) -> int:
        """Minted minus burned: what `check()` proves the balances add up to."""
        return self._minted.get(asset, 0) - self._burned.get(asset, 0)

    # -- writing ---------------------------------------------------------------------------

    def mint(self, account: str, asset: str, amount: int) -> None:
        _check_name(account, "account")
        _check_name(asset, "asset")
        check_amount(amount)
        if amount:
            book = self._book(asset)
            book[account] = book.get(account, 0) + amount
        self._minted[asset] = self._minted.get(asset, 0) + amount
        self._burned.setdefault(asset, 0)

    def burn(self, account: str, asset: str, amount: int) -> None:
        check_amount(amount)
        book = self._books.get(asset)
        have = book.get(account, 0) if book else 0
        if have < amount:
            raise InsufficientBalance(account, asset, have, amount)
        if amount:
            self._debit(book, account, have, amount)
            self._burned[asset] += amount

    def transfer(self, src: str, dst: str, asset: str, amount: int) -> None:
        _check_name(dst, "dst")
        check_amount(amount)
        book = self._books.get(asset)
        have = book.get(src, 0) if book else 0
        if have < amount:
            raise InsufficientBalance(src, asset, have, amount)
        if amount and src != dst:
            self._debit(book, src, have, amount)
            book[dst] = book.get(dst, 0) + amount

    @staticmethod
    def _debit(book: dict[str, int], account: str, have: int, amount: int) -> None:
        # Zero balances are deleted, not stored, so that holders() lists only real holders.
        if have == amount:
            del book[account]
        else:
            book[account] = have - amount

    def _book(self, asset: str) -> dict[str, int]:
        """The live `{account: balance}` dict of `asset`, created empty if missing.

        For `abm.amm.pool` only: a pool reads its reserves and settles a swap in these dicts
        directly, after its own checks, so that the swap path is a handful of dict operations.
        Whoever writes here keeps the ledger's rules: int balances > 0, zero entries deleted,
        and no change to the sum (swaps and transfers only; mints and burns go through
        `mint` and `burn`).
        """
        book = self._books.get(asset)
        if book is None:
            _check_name(asset, "asset")
            book = self._books[asset] = {}
        return book

    # -- the invariant ---------------------------------------------------------------------

    def check(self) -> None:
        """Raise `InvariantViolation` unless, for every asset, every balance is an int > 0 and
        the balances add up to exactly minted - burned."""
        for asset in self._books.keys() | self._minted.keys():
            book = self._books.get(asset, {})
            for account, bal in book.items():
                if type(bal) is not int or bal <= 0:
                    raise InvariantViolation(f"{account} holds {bal!r} {asset}")
            total = sum(book.values())
            minted, burned = self.minted(asset), self.burned(asset)
            if total != minted - burned:
                raise InvariantViolation(
                    f"{asset}: balances add up to {total}, minted {minted} - burned {burned}"
                    f" = {minted - burned} (off by {total - (minted - burned)})"
                )
