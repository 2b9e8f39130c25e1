"""The `wsf` command: validate, run, report, viz and sweep scenario files.

Bad input (a wrong scenario file, an existing output folder) prints one paragraph naming the
file, the field, the value and what is allowed, and exits with code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from abm.scenario import ScenarioError, load_scenario, read_yaml

EXIT_BAD_INPUT = 2
REFERENCE = "docs/scenario-reference.md"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except (ScenarioError, FileExistsError, FileNotFoundError) as exc:
        print(f"wsf {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeError as exc:
        # A sweep whose runs failed at run time: the others are stored, the tracebacks are in
        # the sweep folder, and re-running retries only the failed ones.
        from abm.sweep import SweepRunError

        if not isinstance(exc, SweepRunError):
            raise
        print(f"wsf {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        kept = ("finished runs are kept; run the same command again to resume"
                if args.command == "sweep" else "nothing partial was kept")
        print(f"wsf {args.command}: interrupted; {kept}.", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wsf",
        description="WallStreetFeds ABM: client-specific tokens as investment vehicles in "
        "federated learning.",
        epilog=f"Every scenario field and component is described in {REFERENCE} (also printed "
        "by `wsf schema --markdown`); the model itself in docs/model.md.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    v = sub.add_parser("validate", help="check a scenario or sweep file and print it resolved")
    v.add_argument("file", type=Path)
    v.set_defaults(func=_validate)

    sc = sub.add_parser("schema", help="print the scenario reference (every field and "
                        "component)")
    sc.add_argument("--markdown", action="store_true", required=True,
                    help=f"as Markdown (the text of {REFERENCE})")
    sc.set_defaults(func=_schema)

    r = sub.add_parser("run", help="run a scenario and write a run folder")
    r.add_argument("file", type=Path)
    r.add_argument("--out", type=Path, help="run folder to create (must not exist)")
    r.add_argument("--seed", type=_nonneg_int, help="override the scenario's seed")
    r.add_argument("--steps", type=_pos_int, help="override the number of steps")
    r.add_argument("--check", action="store_true",
                   help="prove the ledger's conservation invariant after every step")
    r.add_argument("--no-report", action="store_true",
                   help="skip the figures and report.md (`wsf report RUN_DIR` makes them later)")
    r.add_argument("--counterfactual", action="store_true",
                   help="also run the twin (same seed, reward budget 0) into counterfactual/ "
                        "and report what the rewards caused (doubles the run time)")
    r.set_defaults(func=_run)

    rep = sub.add_parser("report", help="regenerate figures and report.md of a run or sweep")
    rep.add_argument("folder", type=Path)
    rep.set_defaults(func=_report)

    vz = sub.add_parser("viz", help="open the browser app for a scenario (127.0.0.1)")
    vz.add_argument("file", type=Path)
    vz.add_argument("--port", type=_pos_int, default=None)
    vz.set_defaults(func=_viz)

    sw = sub.add_parser("sweep", help="run a parameter sweep (local processes or Dask)")
    sw.add_argument("file", type=Path)
    sw.add_argument("--workers", type=_pos_int, default=None,
                    help="local worker processes (default: CPU count)")
    sw.add_argument("--scheduler", default=None,
                    help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    sw.add_argument("--out", type=Path, default=None, help="sweep folder (resumes if it exists)")
    sw.set_defaults(func=_sweep)
    return p


def _pos_int(text: str) -> int:
    value = _nonneg_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _validate(args: argparse.Namespace) -> int:
    import yaml

    if "base" in read_yaml(args.file, kind="scenario or sweep"):  # only sweep files have one
        from abm.sweep import load_sweep

        sweep = load_sweep(args.file)
        record = sweep.to_record()
        shown = {k: record[k] for k in ("name", "base", "overrides", "grid", "seeds", "report")}
        print(yaml.safe_dump(shown, sort_keys=False), end="")
        print(f"# {args.file}: valid sweep ({len(sweep.runs)} runs, each validated; base "
              f"scenario {sweep.base})", file=sys.stderr)
        return 0
    scenario = load_scenario(args.file)
    print(yaml.safe_dump(scenario.to_dict(), sort_keys=False), end="")
    print(f"# {args.file}: valid ({scenario.n_clients} clients, {scenario.steps} steps, "
          f"{scenario.n_rounds} FL rounds)", file=sys.stderr)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from abm.reference import scenario_reference

    print(scenario_reference(), end="")
    return 0


def _run(args: argparse.Namespace) -> int:
    from abm.run import default_out_dir, refuse_existing, simulate, write_run

    scenario = load_scenario(args.file)
    overrides = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.steps is not None:
        overrides["steps"] = args.steps
    if overrides:
        scenario = scenario.with_overrides(overrides, source=f"{args.file} (command line)")
    out = args.out or default_out_dir(scenario)
    refuse_existing(out)  # before the run, not after minutes of simulation
    result = simulate(scenario, check=args.check, progress=True,
                      counterfactual=args.counterfactual or scenario.counterfactual)
    write_run(result, out)
    _print_summary(result.summary, out)
    if args.no_report:
        print(f"report: not written (--no-report); `wsf report {out}` writes it")
    else:
        from analysis.report import write_report

        print(f"report: {write_report(out)}")
    return 0


def _print_summary(summary: dict, out: Path) -> None:
    import pandas as pd

    table = pd.DataFrame.from_dict(summary["clients"], orient="index")[[
        "behaviour", "contribution", "allotted_usd", "allotted_vs_equal_pct", "cash_paid_usd",
        "attributable_usd", "attributable_vs_equal_pct", "mtm_change_usd", "final_price"]]
    table.index.name = "client"
    with pd.option_context("display.width", 120, "display.float_format", "{:,.4f}".format):
        print(table.to_string())
    t = summary["time_by_phase_s"]
    print(
        f"\n{summary['scenario']} (seed {summary['seed']}): {summary['steps']} steps, "
        f"{summary['rounds']} rounds, policy {summary['policy']}, method {summary['method']}, "
        f"final accuracy {summary['final_accuracy']:.3f}\n"
        f"rewards {summary['total_reward_usd']:,.2f} USD, distribution cost "
        f"{summary['distribution_cost_usd']:,.2f} USD, "
        f"unranked rounds {summary['unranked_rounds']['rounds']}\n"
        + ("counterfactual twin: counterfactual/ "
           f"({summary['counterfactual']['twin_wall_time_s']:.1f} s)\n"
           if summary["counterfactual"]["ran"] else "")
        +
        f"{summary['wall_time_s']:.1f} s ({summary['steps_per_s']} steps/s): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
        + f"\nrun folder: {out}"
    )


def _report(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (expected a run or sweep folder)")
    if (folder / "sweep.yaml").is_file():
        from analysis.sweep import write_sweep_report

        path = write_sweep_report(folder)
    else:
        from analysis.report import write_report
        from analysis.runs import RunFolderError

        try:
            path = write_report(folder)
        except RunFolderError as exc:
            raise ScenarioError(str(exc)) from None
    print(f"report: {path}")
    return 0


def _viz(args: argparse.Namespace) -> int:
    from abm.viz.server import launch

    load_scenario(args.file)  # fail fast, with the usual message, before starting a server
    return launch(args.file, port=args.port)


def _sweep(args: argparse.Namespace) -> int:
    from abm.sweep import SweepRunError, load_sweep, run_sweep
    from abm.sweep.store import default_out
    from analysis.sweep import write_sweep_report

    try:
        out = run_sweep(args.file, workers=args.workers, scheduler=args.scheduler, out=args.out)
    except SweepRunError:
        # Report what finished (the failed runs are retried by running the command again).
        from abm.sweep import SweepError

        folder = Path(args.out) if args.out else default_out(load_sweep(args.file))
        with contextlib.suppress(SweepError):  # nothing finished: nothing to report
            print(f"report of the finished runs: {write_sweep_report(folder)}", file=sys.stderr)
        raise
    print(f"sweep folder: {out}")
    print(f"report: {write_sweep_report(out)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
