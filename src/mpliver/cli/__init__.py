"""The `mpliver` command line: one typer app; each command lives in its own module in this package.

A command module defines `register(app: typer.Typer) -> None`. Modules are discovered here, so adding a
command is adding a file. `MpliverError`s and `OSError`s (e.g. a full disk) become one line on stderr and
exit status 2.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings

import typer

from mpliver._version import __version__
from mpliver.errors import RESEARCH_NOTICE, InputWarning, MpliverError, describe_os_error

app = typer.Typer(
    name="mpliver",
    help=f"Multi-phase CT liver tumour segmentation (SAM + URIM). {RESEARCH_NOTICE}.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # -h as well as --help, in every command (click passes it on to sub-commands)
    context_settings={"help_option_names": ["-h", "--help"]},
    # click's plain help: flags read "--tta / --no-tta", "-i, --input PATH" (typer's rich panels print a
    # <bool> type beside every flag)
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"mpliver {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """The root command: `--version`; the help text is the app's, with the research notice."""


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """`InputWarning`s as one `warning: ...` line on stderr; other warnings as Python prints them."""
    if issubclass(category, InputWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", InputWarning)  # once per message
            warnings.showwarning = _show_warning
            app(args=argv, prog_name="mpliver")
    except MpliverError as exc:
        details = getattr(exc, "details", None)  # e.g. the table of a series' acquisition groups
        if details:
            print(details, file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write or read the code did not wrap: still one line naming the path and cause
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # click's normal exit path, also for usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
