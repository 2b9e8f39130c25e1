"""The Mesa layer's actors: FL clients, investors (and their strategies), liquidity providers
and the federation, plus the rules they follow (cash-out and exit rules, strategies).

Deliberately empty of imports: the rule modules (`strategies`, `cash_out`, `lp_exit`) declare
registered components that `wsf validate` reads without importing Mesa; the agent modules
(`client`, `investor`, `liquidity`, `federation`, `trader`) import Mesa.
"""
