"""Swaps per second through `abm.amm.Pool` (exact integers) and through uniswappy, on the same
pool and the same sequence of alternating swaps, in one run.

    python -m bench.amm [--swaps N] [--uniswappy-swaps N] [--repeats N]

Both sides start from the same reserves (1,000,000 TKN / 2,000,000 USD, 18 decimals) and sell
the same amounts (seeded, 1 to 100 display units, token and USD in turn) given in integer base
units. uniswappy runs in its integer mode (`precision="GWEI"`), once through its leanest swap
method (`UniswapExchange.swap_exact_tokens_for_tokens`, the headline ratio) and once through its
documented `Swap().apply` process. Each side's figure is its best of `--repeats` interleaved
timed runs, each on a fresh pool, so that a busy machine slows both alike. Every output of ours
is checked against UniswapV2Library's getAmountOut, and uniswappy's outputs are compared with
the same reference.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence

from abm.amm import ONE, Ledger, Pool, get_amount_out

TARGET_RATIO = 25
RESERVE_TOKEN = 1_000_000 * ONE
RESERVE_BASE = 2_000_000 * ONE
TRADER = "trader"
OURS = "abm.amm Pool.swap_exact_in"
HEADLINE = "uniswappy swap_exact_tokens_for_tokens, integer"


def workload(n: int, seed: int = 0) -> list[tuple[bool, int]]:
    """`n` swaps `(sell_token, amount_in)`, alternating token and USD, 1 to 100 units each."""
    rng = random.Random(seed)
    return [(i % 2 == 0, rng.randrange(ONE, 100 * ONE)) for i in range(n)]


def reference_outputs(swaps: Sequence[tuple[bool, int]]) -> list[int]:
    """UniswapV2Library.getAmountOut along the sequence (fee 30 bps)."""
    reserve_token, reserve_base, outs = RESERVE_TOKEN, RESERVE_BASE, []
    for sell_token, amount in swaps:
        if sell_token:
            out = get_amount_out(amount, reserve_token, reserve_base)
            reserve_token, reserve_base = reserve_token + amount, reserve_base - out
        else:
            out = get_amount_out(amount, reserve_base, reserve_token)
            reserve_token, reserve_base = reserve_token - out, reserve_base + amount
        outs.append(out)
    return outs


def run_ours(swaps: Sequence[tuple[bool, int]]) -> tuple[float, list[int]]:
    ledger = Ledger()
    pool = Pool(ledger, "TKN", "USD")
    ledger.mint("lp", "TKN", RESERVE_TOKEN)
    ledger.mint("lp", "USD", RESERVE_BASE)
    pool.add_liquidity("lp", RESERVE_TOKEN, RESERVE_BASE)
    ledger.mint(TRADER, "TKN", sum(a for s, a in swaps if s))
    ledger.mint(TRADER, "USD", sum(a for s, a in swaps if not s))
    swap = pool.swap_exact_in
    calls = [("TKN" if sell_token else "USD", amount) for sell_token, amount in swaps]
    outs = []
    append = outs.append
    start = time.perf_counter()
    for asset, amount in calls:
        append(swap(TRADER, asset, amount))
    elapsed = time.perf_counter() - start
    ledger.check()
    return elapsed, outs


def uniswappy_runner(via_process: bool, integer: bool = True) -> Callable:
    """A run of the workload on a fresh uniswappy V2 exchange: in its integer mode
    (`precision="GWEI"`, amounts in base units) or its default float mode (`"DEC"`, amounts in
    display units), through `swap_exact_tokens_for_tokens` or through `Swap().apply`."""
    from uniswappy import ERC20, Swap, UniswapExchangeData, UniswapFactory

    scale = 1 if integer else ONE

    def run(swaps: Sequence[tuple[bool, int]]) -> tuple[float, list]:
        tkn, usd = ERC20("TKN", "0x01"), ERC20("USD", "0x02")
        data = UniswapExchangeData(
            tkn0=tkn,
            tkn1=usd,
            symbol="LP",
            address="0x03",
            precision="GWEI" if integer else "DEC",
        )
        lp = UniswapFactory("factory", "0x04").deploy(data)
        reserves = (RESERVE_TOKEN // scale, RESERVE_BASE // scale)
        lp.add_liquidity("lp", *reserves, *reserves)
        calls = [
            (tkn if sell_token else usd, amount if integer else amount / ONE)
            for sell_token, amount in swaps
        ]
        outs = []
        append = outs.append
        if via_process:
            start = time.perf_counter()
            for token, amount in calls:
                append(Swap().apply(lp, token, TRADER, amount))
        else:
            swap = lp.swap_exact_tokens_for_tokens
            start = time.perf_counter()
            for token, amount in calls:
                append(swap(amount, 0, token, TRADER))
        return time.perf_counter() - start, outs

    return run


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m bench.amm", description=__doc__.split("\n")[0])
    parser.add_argument("--swaps", type=int, default=20_000, help="swaps per run, ours")
    parser.add_argument("--uniswappy-swaps", type=int, default=2_000, help="swaps per run, theirs")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per side (best kept)")
    args = parser.parse_args([] if argv is None else argv)

    swaps = workload(max(args.swaps, args.uniswappy_swaps))
    reference = reference_outputs(swaps)
    ours_swaps, their_swaps = swaps[: args.swaps], swaps[: args.uniswappy_swaps]

    sides: dict[str, Callable] = {OURS: run_ours}
    try:
        sides[HEADLINE] = uniswappy_runner(via_process=False)
        sides["uniswappy Swap().apply, integer mode"] = uniswappy_runner(via_process=True)
        sides["uniswappy Swap().apply, default float mode"] = uniswappy_runner(
            via_process=True, integer=False
        )
    except ImportError:
        print("uniswappy is not installed (pip install -e '.[bench]'): measuring abm.amm alone")

    best: dict[str, float] = {}
    outputs: dict[str, list[int]] = {}
    for _ in range(args.repeats):
        for name, run in sides.items():
            n = len(ours_swaps) if run is run_ours else len(their_swaps)
            elapsed, outs = run(ours_swaps if run is run_ours else their_swaps)
            best[name] = min(best.get(name, float("inf")), elapsed / n)
            outputs[name] = outs

    ours = OURS
    exact = outputs[ours] == reference[: len(ours_swaps)]
    print(
        f"bench.amm: {len(ours_swaps):,} swaps (ours) / {len(their_swaps):,} (uniswappy), "
        f"best of {args.repeats}, one TKN/USD pool, alternating sides"
    )
    rates = {name: 1 / seconds for name, seconds in best.items()}
    for name, rate in rates.items():
        print(f"  {name:<48} {rate:>12,.0f} swaps/s  {best[name] * 1e6:8.2f} us/swap")
    print(f"  abm.amm outputs equal UniswapV2Library.getAmountOut: {'yes' if exact else 'NO'}")
    for name in rates:
        if name == ours:
            continue
        ratio = rates[ours] / rates[name]
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        theirs = outputs[name]
        if all(isinstance(out, int) for out in theirs):
            diff = sum(a != b for a, b in zip(theirs, reference, strict=False))
            exactness = f"outputs differ from getAmountOut in {diff:,} of {len(theirs):,} swaps"
        else:
            error = max(abs(o * ONE / r - 1) for o, r in zip(theirs, reference, strict=False))
            exactness = f"float outputs, worst relative error {error:.1e}"
        print(
            f"  ratio vs {name}: {ratio:.1f}x (target >= {TARGET_RATIO}x: {verdict}); {exactness}"
        )
    if not exact:
        raise SystemExit("bench.amm: abm.amm outputs differ from UniswapV2Library")
    return rates


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
