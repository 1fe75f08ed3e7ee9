"""Entry point of the `netfabric` command.

Every NetfabricError becomes one line on stderr; no traceback reaches a user. Exit codes are
Docker's, one rule for every verb: 125 for a flag error and for any refusal of ``run``,
126/127 for ``exec`` of a program that cannot run / is not found, 1 for every other error.
Output to a closed pipe ends quietly (exit 141, as a program killed by SIGPIPE). The agent is
reached at ``-H unix://PATH`` or ``$NETFABRIC_HOST``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import typing
from collections.abc import Sequence

from netfabric import __version__
from netfabric.cli.cnicmd import add_cni_commands
from netfabric.cli.commands import add_commands, error_exit_code, group, verb_parser
from netfabric.cli.labcmd import add_lab_commands
from netfabric.cli.services import add_service_commands
from netfabric.errors import NetfabricError

__all__ = ["EXIT_FLAG_ERROR", "EXIT_PIPE", "Parser", "build_parser", "main"]

EXIT_FLAG_ERROR = 125
"""A flag Docker's CLI does not understand, or a refusal of ``run`` (Docker's 125)."""
EXIT_PIPE = 128 + signal.SIGPIPE


class FlagError(Exception):
    """argparse refused the command line; ``main`` prints it Docker's way."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse with Docker's flag errors: the message, a pointer to ``--help``, exit 125."""

    def error(self, message: str) -> typing.NoReturn:
        raise FlagError(message, self.prog)


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"netfabric {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="netfabric",
        description="Overlay network fabric for containers: networks, sandboxes, DNS, cluster.",
        epilog="Start with `netfabric lab walkthrough` (the seed lab on 3 simulated hosts), or "
               "`netfabric lab up --hosts 3` then `netfabric lab exec node1 -- netfabric "
               "network ls`.",
    )
    parser.add_argument("-H", "--host", default=None, metavar="unix://PATH",
                        help="agent socket (default: $NETFABRIC_HOST, then "
                             "unix:///run/netfabric/agent.sock)")
    parser.add_argument("-v", "--version", action="version",
                        version=f"netfabric version {__version__}",
                        help="print the version and exit")
    parser.set_defaults(func=lambda args: _print_help(parser))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = verb_parser(sub, "version", "print the version", examples=["netfabric version"])
    p.set_defaults(func=_cmd_version)

    _, labsub = group(sub, "lab", "simulated hosts (machines) on this computer",
                      "lab_command")
    add_lab_commands(labsub)
    add_commands(sub)
    add_service_commands(sub)
    add_cni_commands(sub)
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _verb(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the deepest verb named in ``argv`` (``netfabric network ls``)."""
    for word in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and word in subs[0].choices:
            parser = subs[0].choices[word]
    return parser


def _usage(parser: argparse.ArgumentParser) -> str:
    """Docker's short usage line: ``netfabric network create [OPTIONS] NAME``."""
    words = [parser.prog, "[OPTIONS]"]
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        name = str(action.metavar or action.dest.upper())
        words.append(f"{name}..." if action.nargs in ("+", "*", argparse.REMAINDER) else name)
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        words.append("COMMAND")
    return " ".join(words)


def _quiet_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's last flush is silent."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except FlagError as exc:
        verb = _verb(parser, sys.argv[1:] if argv is None else list(argv))
        message, code = str(exc), EXIT_FLAG_ERROR
        if message.startswith("unrecognized arguments: "):
            message = "unknown flag: " + message.split(": ", 1)[1]
        elif message.startswith("the following arguments are required: "):
            # Docker: a missing argument is a usage error (1), a bad flag a flag error (125)
            message = f"netfabric: '{verb.prog}' requires " + message.split(": ", 1)[1]
            code = 1
        print(f"{message}\n\nUsage:  {_usage(verb)}\n\n"
              f"Run '{verb.prog} --help' for more information", file=sys.stderr)
        return code
    try:
        rc: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    except NetfabricError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return error_exit_code(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.command == "agent":  # a daemon's log keeps the whole story
            logging.getLogger("netfabric.agent").exception("agent crashed")
        print(f"Error: internal error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
