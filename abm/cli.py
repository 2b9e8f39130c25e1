"""The `wsf` command: validate, run, report, viz and sweep scenario files.

Exit codes, the same for every subcommand:

- 0: done.
- 1: a sweep finished but some of its runs failed (their tracebacks are in the sweep folder).
- 2: bad input (a wrong scenario or sweep file, an unusable output folder, a bad option): one
  paragraph naming the file, the field, the value and what is allowed — never a traceback.
- 70: an internal error, i.e. a bug: one line saying so and naming the file that holds the
  traceback (in the system's temporary folder), for a bug report.
- 130 / 143: stopped by Ctrl-C (SIGINT) / SIGTERM. Both are handled alike: nothing partial
  is kept (a sweep keeps its finished runs and stops its workers).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from abm.errors import shown
from abm.scenario import ScenarioError, load_scenario, read_yaml
from abm.viz.server import port_number

EXIT_BAD_INPUT = 2
EXIT_BUG = 70  # EX_SOFTWARE of sysexits.h
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM
REFERENCE = "docs/scenario-reference.md"
SET_HELP = ("set a scenario field: a dotted path and a YAML value, e.g. --set steps=30 --set "
            "rewards.policy=mint --set investors.0.count=50 (repeatable; validated like the file)")
SET_HELP_RUNS = ("set a scenario field of every run (merged over the file's overrides; not a "
                 "swept field or the seed), e.g. --set steps=30 (repeatable)")
#: Keys that make a file with `base:` a sweep file (a scenario file may have a base too).
SWEEP_KEYS = ("grid", "design", "parameters", "seeds", "overrides", "report")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same cleanup runs (a run's
    temporary folder removed, a sweep's workers stopped)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _dispatch(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand; turn every way it can end into an exit code and one paragraph."""
    command = f"wsf {args.command}"
    try:
        _check_paths(args)
        return args.func(args)
    except (ScenarioError, FileExistsError, FileNotFoundError) as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        kept = ("finished runs are kept; run the same command again to resume"
                if args.command == "sweep" else
                "finished trials and runs are kept; run the same command again to resume"
                if args.command == "optimize" else "nothing partial was kept")
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"{command}: {how}; {kept}.", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    except Exception as exc:  # anything else is a bug in wsf, never the user's fault
        executor = sys.modules.get("abm.sweep.executor")  # loaded if a sweep or study ran
        if executor is not None and isinstance(exc, executor.SweepRunError):
            # A sweep whose runs failed at run time: the others are stored, the tracebacks are
            # in the sweep folder, and re-running retries only the failed ones.
            print(f"{command}: {exc}", file=sys.stderr)
            return 1
        report = _save_bug_report(args, exc)
        where = (f"the traceback is in {report}; please attach that file to a bug report"
                 if report else "the traceback follows")
        print(f"{command}: internal error ({type(exc).__name__}: "
              f"{str(exc)[:200]}); this is a bug in wsf, not a problem "
              f"with your input; {where}.", file=sys.stderr)
        if report is None:
            traceback.print_exception(exc, file=sys.stderr)
        return EXIT_BUG


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse, before anything is read or written, a path argument the file system would
    refuse (a name too long, a link loop): `abm.paths.check_path`."""
    from abm.paths import check_path

    for name, what in (("file", "the file"), ("folder", "the folder"), ("out", "--out")):
        value = getattr(args, name, None)
        if value is not None:
            check_path(value, what)


def _save_bug_report(args: argparse.Namespace, exc: BaseException) -> Path | None:
    """Write the traceback and what was run to `wsf-bug-*.txt` in the temporary folder."""
    try:
        fd, name = tempfile.mkstemp(prefix=f"wsf-{args.command}-bug-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f"wsf {args.command} internal error, "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
            out.write(f"command line: {sys.argv!r}\n")
            out.write(f"python {platform.python_version()} on {platform.platform()}\n")
            out.write(f"working directory: {os.getcwd()}\n\n")
            out.write("".join(traceback.format_exception(exc)))
        return Path(name)
    except OSError:
        return None


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
    v.add_argument("--set", dest="settings", action="append", type=_setting, default=[],
                    metavar="KEY=VALUE", help=SET_HELP)
    v.set_defaults(func=_validate)

    sc = sub.add_parser("schema", help="print the scenario files' JSON Schema (for editor "
                        "completion), or with --markdown the scenario reference")
    sc.add_argument("--markdown", action="store_true",
                    help=f"the scenario reference as Markdown (the text of {REFERENCE})")
    sc.set_defaults(func=_schema)

    r = sub.add_parser("run", help="run a scenario and write a run folder")
    r.add_argument("file", type=Path)
    r.add_argument("--out", type=Path, help="run folder to create (must not exist)")
    r.add_argument("--seed", type=_nonneg_int, help="override the scenario's seed")
    r.add_argument("--steps", type=_pos_int, help="override the number of steps")
    r.add_argument("--set", dest="settings", action="append", type=_setting, default=[],
                    metavar="KEY=VALUE", help=SET_HELP)
    r.add_argument("--check", action="store_true",
                   help="prove the ledger's conservation invariant after every step")
    r.add_argument("--no-report", action="store_true",
                   help="skip the figures and report.md (`wsf report RUN_DIR` makes them later)")
    r.add_argument("--counterfactual", action="store_true",
                   help="also run the twin (same seed, reward budget 0) into counterfactual/ "
                        "and report what the rewards caused (it replays the run's learning: "
                        "it adds the market's time)")
    r.set_defaults(func=_run)

    cc = sub.add_parser("check-claims", help="re-run shipped files and check the answers "
                        "their `claims:` blocks state (exit 0: all hold, 1: some fail)")
    cc.add_argument("files", type=Path, nargs="+")
    cc.set_defaults(func=_check_claims)

    rep = sub.add_parser("report", help="regenerate figures and report.md of a run or sweep, "
                         "or the figures of a study (wsf optimize)")
    rep.add_argument("folder", type=Path)
    rep.set_defaults(func=_report)

    vz = sub.add_parser("viz", help="open the browser app for a scenario (127.0.0.1)")
    vz.add_argument("file", type=Path)
    vz.add_argument("--port", type=port_number, default=None,
                    help="TCP port on 127.0.0.1 (default 8765; 0 = any free port)")
    vz.add_argument("--set", dest="settings", action="append", type=_setting, default=[],
                    metavar="KEY=VALUE", help=SET_HELP)
    vz.set_defaults(func=_viz)

    sw = sub.add_parser("sweep", help="run a parameter sweep (local processes or Dask)")
    sw.add_argument("file", type=Path)
    sw.add_argument("--workers", type=_pos_int, default=None,
                    help="local worker processes (default: CPU count)")
    sw.add_argument("--scheduler", default=None,
                    help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    sw.add_argument("--connect-timeout", type=_pos_float, default=None, metavar="SECONDS",
                    help="give up reaching --scheduler after this long (default 5)")
    sw.add_argument("--max-runs", type=_pos_int, default=None, metavar="N",
                    help="refuse a sweep of more than N runs (default: the ceiling "
                         "MAX_RUNS = 10,000; raise it for a bigger sweep)")
    sw.add_argument("--out", type=Path, default=None, help="sweep folder (resumes if it exists)")
    sw.add_argument("--set", dest="settings", action="append", type=_setting, default=[],
                    metavar="KEY=VALUE", help=SET_HELP_RUNS)
    sw.set_defaults(func=_sweep)

    op = sub.add_parser("optimize", help="search mechanism settings with an Optuna study "
                        "(local processes or Dask)")
    op.add_argument("file", type=Path)
    op.add_argument("--trials", type=_pos_int, default=20,
                    help="finished trials wanted in all (default 20); a resumed study runs "
                         "only the missing ones")
    op.add_argument("--workers", type=_pos_int, default=None,
                    help="local worker processes, and trials in parallel (default: CPU count)")
    op.add_argument("--scheduler", default=None,
                    help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    op.add_argument("--connect-timeout", type=_pos_float, default=None, metavar="SECONDS",
                    help="give up reaching --scheduler after this long (default 5)")
    op.add_argument("--out", type=Path, default=None,
                    help="study folder (default studies-out/<name>; resumes if it exists)")
    op.add_argument("--set", dest="settings", action="append", type=_setting, default=[],
                    metavar="KEY=VALUE", help=SET_HELP_RUNS)
    op.set_defaults(func=_optimize)
    return p


def _pos_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _nonneg_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer, got {shown(text, 40)}"
        ) from None


def _setting(text: str) -> tuple[str, Any]:
    """argparse type of `--set KEY=VALUE`: (dotted path, the value read as YAML: `30` an
    integer, `mint` a string, `[1, 2]` a list, `{kind: constant, amount: 5}` a mapping)."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", key):
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY a dotted field path (steps=30, rewards.policy=mint, "
            f"investors.0.count=50), got {shown(text, 60)}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise argparse.ArgumentTypeError(
            f"{key}: the value {shown(raw, 60)} is not a YAML value ({problem}); quote a "
            f"string that holds YAML syntax") from None
    return key, value


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The `--set` values as dotted-path overrides (a key set twice: the last value)."""
    return dict(getattr(args, "settings", None) or [])


def _with_settings(scenario: Any, args: argparse.Namespace, extra: dict[str, Any] | None = None
                   ) -> Any:
    """`scenario` with the command line's `--set` values (and `extra`) applied; the usual
    paragraph, naming the file and "(command line)", for a bad one."""
    overrides = {**_settings(args), **(extra or {})}
    if not overrides:
        return scenario
    return scenario.with_overrides(overrides, source=f"{args.file} (command line)")


def file_kind(data: dict[str, Any]) -> str:
    """"study", "sweep" or "scenario": what a file's top-level keys make it."""
    if "base" in data and "objectives" in data:
        return "study"
    if "base" in data and any(key in data for key in SWEEP_KEYS):
        return "sweep"
    return "scenario"


def _pos_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {shown(text, 40)}")
    return value


def _validate(args: argparse.Namespace) -> int:
    data = read_yaml(args.file, kind="scenario, sweep or study")
    status = _validate_file(args, data)
    if "claims" in data:
        # Said once the file itself is valid. The block is not part of what runs (`wsf run`
        # drops it), so a bad block does not make the file invalid: it is reported here and
        # refused by `wsf check-claims` (exit 2).
        from analysis.claims import read_claims

        try:
            _, checks = read_claims(args.file)
        except ScenarioError as exc:
            print(f"# warning: its claims block is invalid, `wsf check-claims` refuses it: "
                  f"{exc}", file=sys.stderr)
        else:
            print(f"# {args.file}: claims block valid ({sum(len(c.figures) for c in checks)} "
                  f"figures in {len(checks)} check(s); `wsf check-claims` re-measures them)",
                  file=sys.stderr)
    return status


def _validate_file(args: argparse.Namespace, data: dict[str, Any]) -> int:
    import yaml

    kind = file_kind(data)
    if kind == "study":  # `wsf optimize`
        from abm.sweep.optimize import load_study
        from analysis.metrics import RUN_OUTPUTS

        study = load_study(args.file, outputs=RUN_OUTPUTS, settings=_settings(args))
        record = study.record()
        print(yaml.safe_dump({k: v for k, v in record.items() if k != "base_config"},
                             sort_keys=False), end="")
        print(f"# {args.file}: valid study ({len(study.parameters)} parameters, "
              f"{len(study.objectives)} objective(s), {len(study.seeds)} seeds per trial; "
              f"base scenario {study.base_path})", file=sys.stderr)
        return 0
    if kind == "sweep":
        from abm.sweep import load_sweep

        sweep = load_sweep(args.file, settings=_settings(args))
        record = sweep.to_record()
        resolved = {k: record[k] for k in ("name", "base", "overrides", "grid", "seeds",
                                           "counterfactual", "report")}
        if resolved["counterfactual"] is None:  # grid points differ: say so, not null
            resolved["counterfactual"] = "per grid point"
        if sweep.design is not None:
            design = record["design"]
            resolved["design"] = {k: v for k, v in design.items() if k != "points"}
            resolved["points"] = design["points"]
        print(yaml.safe_dump(resolved, sort_keys=False), end="")
        points = (f"{len(sweep.points)} {sweep.design.kind} design points x "
                  f"{len(sweep.seeds)} seeds, " if sweep.design is not None else "")
        print(f"# {args.file}: valid sweep ({points}{len(sweep.runs)} runs, each validated; "
              f"base scenario {sweep.base})", file=sys.stderr)
        return 0
    scenario = _with_settings(load_scenario(args.file), args)
    print(yaml.safe_dump(scenario.to_dict(), sort_keys=False), end="")
    owners = ("" if scenario.n_owners == scenario.n_clients
              else f" of {scenario.n_owners} owners: Sybil identities")
    print(f"# {args.file}: valid ({scenario.n_clients} clients{owners}, {scenario.steps} "
          f"steps, {scenario.n_rounds} FL rounds)", file=sys.stderr)
    print(f"# {_expected_time(scenario)}", file=sys.stderr)
    return 0


def _expected_time(scenario) -> str:
    """The scenario's expected run time from the committed cost model (`abm.cost_model`),
    or why there is none."""
    from abm.cost_model import DEFAULT_PATH, CostModel

    try:
        model = CostModel.load()
    except (OSError, ValueError, KeyError) as exc:
        return (f"expected run time: no cost model ({DEFAULT_PATH.name}: {shown(str(exc), 80)}"
                f"; `python -m bench.scale --fit` makes one)")
    return model.describe(scenario)


def _check_claims(args: argparse.Namespace) -> int:
    from analysis.claims import check_file, format_results, read_claims

    for path in args.files:  # every file's block is checked before anything runs
        read_claims(path)
    results = []
    for path in args.files:
        checked = check_file(path)
        print(format_results(checked), flush=True)
        results += checked
    failed = [r for r in results if not r.holds]
    print(f"{len(results) - len(failed)} of {len(results)} claims hold in "
          f"{len(args.files)} file(s)")
    return 1 if failed else 0


def _schema(args: argparse.Namespace) -> int:
    if args.markdown:
        from abm.reference import scenario_reference

        print(scenario_reference(), end="")
        return 0
    import json

    from abm.reference import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def _run(args: argparse.Namespace) -> int:
    from abm.run import simulate
    from abm.run_folder import claim_output, default_out_dir, prepare_output, write_run

    overrides = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.steps is not None:
        overrides["steps"] = args.steps
    scenario = _with_settings(load_scenario(args.file), args, overrides)
    out = args.out or default_out_dir(scenario)
    prepare_output(out)  # before the run, not after minutes of simulation
    with claim_output(out):  # a second `wsf run` into the same --out is told now
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
        f"rewards {summary['total_reward_usd']:,.2f} USD, execution cost "
        f"{summary['execution_cost_usd']:,.2f} USD, "
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
        what = "a file, not a folder" if folder.exists() else "no such folder"
        raise FileNotFoundError(f"{folder}: {what} (expected a run, sweep or study folder)")
    from analysis.runs import RunFolderError

    try:
        if (folder / "sweep.yaml").is_file():
            from analysis.sweep import write_sweep_report

            path = write_sweep_report(folder)
        elif (folder / "optimize.yaml").is_file():
            from analysis.optimize import load_study_trials, write_study_figures

            _, _, skipped = load_study_trials(folder)
            for trial, why in skipped.items():
                print(f"wsf report: warning: {trial} left out of the figure: {why}",
                      file=sys.stderr)
            figures = write_study_figures(folder)
            print(f"figures: {', '.join(str(f) for f in figures)}")
            return 0
        else:
            from analysis.report import write_report

            path = write_report(folder)
    except RunFolderError as exc:
        raise ScenarioError(str(exc)) from None
    except (IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError) as exc:
        # e.g. report.md, figures/, report/ or combined/ replaced by something that is not
        # writable there
        raise ScenarioError(f"{exc.filename2 or exc.filename or folder}: cannot write the "
                            f"report there "
                            f"({exc.strerror}); move it away and run again.") from None
    print(f"report: {path}")
    return 0


def _viz(args: argparse.Namespace) -> int:
    from abm.viz.server import launch

    # Fail fast, with the usual message, before starting a server.
    _with_settings(load_scenario(args.file), args)
    return launch(args.file, port=args.port, settings=_settings(args), prefix="wsf viz")


def _sweep(args: argparse.Namespace) -> int:
    from abm.sweep import SweepRunError, load_sweep, run_sweep
    from abm.sweep.executor import CONNECT_TIMEOUT_S
    from abm.sweep.spec import MAX_RUNS
    from abm.sweep.store import default_out
    from analysis.sweep import write_sweep_report

    max_runs = args.max_runs or MAX_RUNS
    try:
        out = run_sweep(args.file, workers=args.workers, scheduler=args.scheduler, out=args.out,
                        connect_timeout=args.connect_timeout or CONNECT_TIMEOUT_S,
                        max_runs=max_runs, settings=_settings(args))
    except SweepRunError:
        # Report what finished (the failed runs are retried by running the command again).
        from abm.sweep import SweepError

        folder = (Path(args.out) if args.out
                  else default_out(load_sweep(args.file, max_runs=max_runs,
                                              settings=_settings(args))))
        with contextlib.suppress(SweepError):  # nothing finished: nothing to report
            print(f"report of the finished runs: {write_sweep_report(folder)}", file=sys.stderr)
        raise
    print(f"sweep folder: {out}")
    print(f"report: {write_sweep_report(out)}")
    return 0


def _optimize(args: argparse.Namespace) -> int:
    from abm.sweep.executor import CONNECT_TIMEOUT_S, SweepRunError
    from abm.sweep.optimize import run_study
    from analysis.metrics import RUN_OUTPUTS, run_outputs
    from analysis.optimize import write_study_figures

    try:
        out = run_study(args.file, trials=args.trials, workers=args.workers,
                        scheduler=args.scheduler, out=args.out, outputs=run_outputs,
                        output_names=RUN_OUTPUTS,
                        connect_timeout=args.connect_timeout or CONNECT_TIMEOUT_S,
                        settings=_settings(args))
    except SweepRunError:
        # Trials whose runs raised are retried by the next call; draw what finished.
        from abm.sweep.optimize import default_out, load_study

        folder = args.out or default_out(load_study(args.file, outputs=RUN_OUTPUTS,
                                                    settings=_settings(args)))
        if (Path(folder) / "trials.parquet").is_file():
            write_study_figures(folder)
        raise
    figures = write_study_figures(out)
    import pandas as pd

    front = pd.read_csv(out / "pareto.csv")
    with pd.option_context("display.width", 140, "display.max_columns", 20):
        print(front.drop(columns=[c for c in front.columns if c == "run_ids"
                                  or c.endswith("_per_seed")]).to_string(index=False))
    print(f"study folder: {out}")
    print(f"trials: {out / 'trials.parquet'}; front: {out / 'pareto.csv'}, "
          f"{', '.join(str(f) for f in figures)}")
    print(f"scenario files: {out / 'scenarios'} (`wsf run` any of them)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
