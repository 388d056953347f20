"""The `rewind` command line. Thin: parses arguments and calls pipelines/, state/, schemas/."""

from __future__ import annotations

import faulthandler
import signal
import sys
import warnings

import typer
from typer import Abort, Exit
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from schemas.errors import RewindError
from scripts import cli_dlq, cli_kafka, cli_postgres, cli_registry, cli_schemas

__all__ = ["app", "main"]

app = typer.Typer(
    name="rewind",
    help="Rewind: event-sourced order views on Kafka, queryable now and as of any past time.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(cli_kafka.app, name="kafka")
app.add_typer(cli_registry.app, name="registry")
app.add_typer(cli_postgres.app, name="postgres")
app.add_typer(cli_schemas.app, name="schemas")
app.add_typer(cli_dlq.dlq_app, name="dlq")




def _quiet_authlib() -> None:
    # quixstreams pulls in authlib, whose deprecate module force-enables its warning
    # ("always") on import and then warns about its own httpx import on every start.
    try:
        import authlib.deprecate  # noqa: F401
    except ImportError:
        return
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")


_quiet_authlib()


def _register_commands() -> None:
    # Imported here, not at module top, so `rewind kafka ...` does not pay for Quix/rocksdict imports.
    from scripts import cli_demo, cli_orders, cli_outbox, cli_produce, cli_query, cli_replay, cli_run

    cli_produce.register(app)
    cli_run.register(app)
    cli_query.register(app)
    cli_replay.register(app)
    cli_demo.register(app)
    cli_orders.register(app)
    cli_outbox.register(app)


_register_commands()


def main() -> None:
    """Entry point: run the CLI; any deliberate error becomes one line on stderr and a non-zero exit.

    ``kill -USR1 PID`` makes a running command print every thread's stack to stderr (a stuck
    process says where it is stuck, and keeps running)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        rc = app(standalone_mode=False)
    except Exit as exc:
        sys.exit(exc.exit_code)
    except Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except NoArgsIsHelpError:
        sys.exit(2)  # typer has already printed the help
    except ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except RewindError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
