"""Entry point of the ``edge`` command.

Composes ``edge`` (classify, bench), ``train`` (train, data), ``export`` and
``firmware_sim`` (sim). Torch-only commands import torch inside their bodies, so
this module and ``edge classify`` work where torch is not installed.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import Abort, TyperException

from edge import commands as edge_commands
from export.commands import app as export_app
from firmware_sim.commands import app as sim_app
from train.commands import data_app, train_app
from train.revision import git_revision

app = typer.Typer(
    name="edge",
    help="Onboard terrain classification for Mars rovers.\n\n"
    "Example: edge classify ../shared/data/ai4mars-msl-ncam-256/images --out out/demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
edge_commands.register(app)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(export_app, name="export")
app.add_typer(sim_app, name="sim")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; usage errors exit 1 (exit 2 is reserved for 'some frames skipped')."""
    saved_argv = sys.argv
    if (argv if argv is not None else sys.argv[1:])[:1] in (["train"], ["export"]):
        git_revision()   # fixed now: what the run's checkpoints and bundles will record
    if argv is not None:
        # Commands record their own invocation (manifests, run.json) from sys.argv.
        sys.argv = ["edge", *argv]
    try:
        code = app(args=argv, standalone_mode=False)
    except TyperException as exc:  # usage errors and bad parameters
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            typer.echo(f"error: {exc.format_message()}", err=True)
        code = 1
    except Abort:
        typer.echo("aborted", err=True)
        code = 130
    finally:
        sys.argv = saved_argv
    if not isinstance(code, int):
        code = 0
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # python -m toolkit_cli.main (e.g. under torchrun)
    raise SystemExit(main())
