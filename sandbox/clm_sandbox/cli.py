"""``clm-sandbox``: the development tools around the operator (never in an image).

``clm-sandbox up`` starts the local cluster with the operator until Ctrl-C (clm_sandbox.up);
``clm-sandbox demo`` runs the whole loop in it and stops (clm_sandbox.demo, what scripts/demo.sh runs)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clm_operator.cli import dispatch

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "up": ("clm_sandbox.up", "start the local cluster with the operator, until Ctrl-C"),
    "demo": ("clm_sandbox.demo", "run the end-to-end demo in the sandbox, no cluster needed"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("clm-sandbox", __doc__, SUBCOMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
