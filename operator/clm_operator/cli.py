"""``clm-operator``: one entry point, sub-commands implemented in their own modules (imported lazily
so that ``clm-operator crds`` works without the operator's runtime dependencies being importable)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# sub-command -> (module with ``add_arguments(parser)`` and ``main(args) -> int``, help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("clm_operator.runner", "run the operator against the current kubeconfig"),
    "crds": ("clm_operator.api.crdgen", "generate (or --check) the CRD YAML from the API models"),
    "sandbox": ("clm_operator.sandbox.cli", "start the embedded local cluster with the operator"),
    "demo": ("clm_operator.sandbox.demo", "run the end-to-end demo in the sandbox, no cluster needed"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clm-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(_module=module_name)
        # Argument definitions live with the implementation; import only for the chosen command.
        if argv is None:
            chosen = sys.argv[1] if len(sys.argv) > 1 else None
        else:
            chosen = argv[0] if argv else None
        if chosen == name:
            importlib.import_module(module_name).add_arguments(sub)
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    return int(module.main(args))


if __name__ == "__main__":
    sys.exit(main())
