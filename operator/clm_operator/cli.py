"""``clm-operator``: one entry point, sub-commands implemented in their own modules (imported lazily
so that ``clm-operator crds`` works without the operator's runtime dependencies being importable).

The sandbox and the demo are ``clm-sandbox`` (clm_sandbox.cli, development only), which uses
``dispatch`` too."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence

# sub-command -> (module with ``add_arguments(parser)`` and ``main(args) -> int``, help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("clm_operator.runner", "run the operator against the current kubeconfig"),
    "crds": ("clm_contract.crdgen", "generate (or --check) the CRD YAML from the API models"),
}


def dispatch(prog: str, description: str | None, subcommands: Mapping[str, tuple[str, str]],
             argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command's ``main``; only that sub-command's module is
    imported."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command", required=True)
    arguments = sys.argv[1:] if argv is None else list(argv)
    chosen = arguments[0] if arguments else None
    for name, (module_name, help_text) in subcommands.items():
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(_module=module_name)
        # Argument definitions live with the implementation; import only for the chosen command.
        if chosen == name:
            importlib.import_module(module_name).add_arguments(sub)
    args = parser.parse_args(arguments)
    module = importlib.import_module(args._module)
    return int(module.main(args))


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("clm-operator", __doc__, SUBCOMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
