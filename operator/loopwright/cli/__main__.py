"""``kubectl loopwright``: follow and drive the ML loop from the terminal (a kubectl plugin).

kubectl runs any ``kubectl-<name>`` on PATH as ``kubectl <name>``; this one is installed with
the package as the console script ``kubectl-loopwright``. Imports are lazy: ``--help`` and
argument errors never load the API client, and nothing loads pydantic or the kubernetes package.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from loopwright import __version__
from loopwright.cli.errors import EXIT_INTERNAL, CliError

EPILOG = """examples:
  kubectl loopwright get churn --watch          the whole loop of model churn, redrawn as it moves
  kubectl loopwright versions churn             the registry: versions, data, runs, metrics, gates
  kubectl loopwright promote churn              promote the canary of Deployment churn (abort, pause, resume)
  kubectl loopwright train churn                start a run of TrainingPipeline churn now
  kubectl loopwright drift churn                the last checks of DriftPolicy churn, per feature
  kubectl loopwright report dp/churn --retrain  the drift report of the check that triggered a retrain
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    common.add_argument("--context", help="kubeconfig context (default: the current one)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    common.add_argument("--no-color", action="store_true", help="no colours (also: NO_COLOR=1)")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=("json", "yaml"), help="print data for scripts")

    parser = argparse.ArgumentParser(prog="kubectl loopwright", parents=[common], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Follow and drive Loopwright's ML loop (loopwright.dev).")
    parser.add_argument("--version", action="version", version=f"kubectl-loopwright {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, parents=[common, *parents])

    get = command("get", "one model's loop as a tree: data, runs, versions, rollout, drift (without a "
                         "model: every model of the namespace)", output)
    get.add_argument("model", nargs="?")
    get.add_argument("-w", "--watch", action="store_true", help="redraw as the loop moves")
    command("versions", "the model's registry as a table", output).add_argument("model")
    command("lineage", "one ModelVersion from its data to where it serves", output).add_argument("version")
    command("drift", "a DriftPolicy's last checks, per feature", output).add_argument("policy")
    logs = command("logs", "the log of a training run (or of a pipeline's latest run)")
    logs.add_argument("run")
    logs.add_argument("-f", "--follow", action="store_true", help="stream until the run ends")
    logs.add_argument("--tail", type=int, help="only the last N lines")
    for verb, help_ in (("promote", "promote the canary now (skips the remaining steps)"),
                        ("abort", "roll the canary back and reject its version here")):
        cmd = command(verb, f"{help_}: writes spec.rollout.{verb}.version", output)
        cmd.add_argument("deployment")
        cmd.add_argument("--version", type=int, dest="model_version", metavar="N",
                         help="the version to act on (default: the current canary)")
    command("pause", "hold the rollout at its step: writes spec.rollout.paused", output).add_argument(
        "deployment")
    command("resume", "let the rollout go on: writes spec.rollout.paused=false", output).add_argument(
        "deployment")
    command("train", "start one run of a TrainingPipeline now (the train-request annotation)",
            output).add_argument("pipeline")
    command("retrain", "retrain a model: a run of the pipeline that trained its production version",
            output).add_argument("model")
    report = command("report", "save or open an HTML report: dp/NAME (drift), mv/NAME, run/NAME, mlp/NAME")
    report.add_argument("object", help="KIND/NAME")
    report.add_argument("--retrain", action="store_true",
                        help="dp only: the report of the check that requested the last retrain")
    report.add_argument("--open", action="store_true", help="open it in a browser")
    report.add_argument("-f", "--file", help="where to save it (default: the current directory)")
    report.add_argument("--json", action="store_true", help="the report's data as JSON instead of HTML")
    return parser


def run(args: argparse.Namespace) -> None:
    from loopwright.cli import commands, kubeapi, kubeconfig  # noqa: PLC0415 (after argument parsing)
    from loopwright.cli.style import Style  # noqa: PLC0415

    def connect() -> kubeapi.Api:
        return kubeapi.Api(kubeconfig.load(kubeconfig=getattr(args, "kubeconfig", None),
                                           context=getattr(args, "context", None),
                                           namespace=getattr(args, "namespace", None)))

    ctx = commands.Context(connect=connect, style=Style.for_stream(sys.stdout,
                                                                   no_color=getattr(args, "no_color", False)),
                           output=getattr(args, "output", None))
    match args.command:
        case "get":
            commands.get(ctx, args.model, watch=args.watch)
        case "versions":
            commands.versions(ctx, args.model)
        case "lineage":
            commands.lineage(ctx, args.version)
        case "drift":
            commands.drift(ctx, args.policy)
        case "logs":
            commands.logs(ctx, args.run, follow=args.follow, tail=args.tail)
        case "promote" | "abort":
            commands.rollout(ctx, args.command, args.deployment, version=args.model_version)
        case "pause" | "resume":
            commands.rollout(ctx, args.command, args.deployment)
        case "train":
            commands.train(ctx, args.pipeline)
        case "retrain":
            commands.retrain(ctx, args.model)
        case "report":
            commands.report(ctx, args.object, retrain=args.retrain, open_it=args.open, file=args.file,
                            as_json=args.json)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except CliError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        return 0 if getattr(args, "watch", False) or getattr(args, "follow", False) else 130
    except BrokenPipeError:
        # The reader went away (| head): not an error, and nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("LOOPWRIGHT_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(f"error: internal error: {type(exc).__name__}: {exc} (LOOPWRIGHT_DEBUG=1 shows the "
                         "traceback; please report it)\n")
        return EXIT_INTERNAL
    return 0


if __name__ == "__main__":
    sys.exit(main())
