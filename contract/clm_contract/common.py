"""Shared building blocks: camelCase models, the standard Kubernetes condition shape, and the checks
that run twice with one meaning: in pydantic (operator and trainer) and as a CEL rule in the generated
CRD (the API server, at apply).

A check that the structural schema cannot express (a relation between fields, a Kubernetes quantity,
forbidden characters) is written here once as a Python predicate and as its CEL twin; ``cel()`` puts
the CEL rule into the model's JSON schema (``x-kubernetes-validations``), where ``crdgen`` copies it to
the CRD. tests/integration/test_admission.py applies a table of specs and asserts that the API server
and pydantic accept and refuse the same ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

VALIDATIONS_KEY = "x-kubernetes-validations"


@dataclass(frozen=True)
class CelRule:
    """One entry of ``x-kubernetes-validations``: the API server evaluates ``rule`` with ``self`` bound to
    the node carrying it, and answers ``<field>: Invalid value: ...: <message>`` when it is false."""

    rule: str
    message: str | None = None
    message_expression: str | None = None
    field_path: str | None = None

    def to_wire(self) -> dict[str, str]:
        wire = {"rule": self.rule}
        if self.message is not None:
            wire["message"] = self.message
        if self.message_expression is not None:
            wire["messageExpression"] = self.message_expression
        if self.field_path is not None:
            wire["fieldPath"] = self.field_path
        return wire


def cel(*rules: CelRule) -> dict[str, Any]:
    """``json_schema_extra`` of a field or a model: its CEL rules, for ``crdgen``."""
    return {VALIDATIONS_KEY: [rule.to_wire() for rule in rules]}


# -- free text ------------------------------------------------------------------------------------------
# Characters refused in free text that people read in a terminal (``kubectl get``, Events, logs): C0/C1
# controls and DEL (NUL among them), the Unicode line/paragraph separators, and the bidirectional
# formatting characters that make text display in another order than it is stored (U+202E, "Trojan
# Source"). Everything else is carried as given, emoji (and the zero-width joiner of emoji sequences)
# included: the trainer reads its spec as JSON, so non-ASCII text round-trips (clm_trainer.cli).
_CONTROL = ((0x00, 0x08), (0x0B, 0x1F), (0x7F, 0x9F))
_SEPARATORS_AND_BIDI = ((0x061C, 0x061C), (0x200E, 0x200F), (0x2028, 0x202E), (0x2066, 0x2069))
_TAB_AND_NEWLINE = ((0x09, 0x0A),)
FORBIDDEN_TEXT_DESCRIPTION = ("control characters (NUL, ESC, ...), line separators or bidirectional "
                              "formatting characters (U+202E, ...)")


def _python_class(ranges: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    return re.compile("[" + "".join(f"\\u{lo:04x}-\\u{hi:04x}" for lo, hi in ranges) + "]")


def _re2_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "[" + "".join(f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" for lo, hi in ranges) + "]"


def _text_check(name: str, ranges: tuple[tuple[int, int], ...], allowed: str) -> tuple[Any, CelRule]:
    forbidden = _python_class(ranges)
    message = f"must not contain {FORBIDDEN_TEXT_DESCRIPTION}{allowed}: remove them"

    def check(value: str) -> str:
        found = forbidden.search(value)
        if found:
            raise ValueError(f"{message} (found U+{ord(found.group()):04X} at position {found.start()})")
        return value

    check.__name__ = f"_check_{name}"
    # A CEL raw string (r'...'): the RE2 escapes reach the regex engine as written.
    return check, CelRule(rule=f"!self.matches(r'{_re2_class(ranges)}')", message=message)


_check_text, _TEXT_RULE = _text_check("text", _CONTROL + _SEPARATORS_AND_BIDI,
                                      "; tab and newline are allowed")
_check_line, _LINE_RULE = _text_check("line", _CONTROL + _SEPARATORS_AND_BIDI + _TAB_AND_NEWLINE,
                                      ", nor tab or newline")

Text = Annotated[str, AfterValidator(_check_text), Field(json_schema_extra=cel(_TEXT_RULE))]
"""Free text (a note): printable Unicode, tab and newline."""
Line = Annotated[str, AfterValidator(_check_line), Field(json_schema_extra=cel(_LINE_RULE))]
"""One line of free text (a name, an identity): printable Unicode only."""


# -- Kubernetes quantities ------------------------------------------------------------------------------
# The grammar of k8s.io/apimachinery resource.Quantity: a signed decimal number, then a binary-SI suffix
# (Ki..Ei), a decimal exponent (e3, E-2) or a decimal-SI suffix (n, u, m, k, M, G, T, P, E). "1E" is exa,
# "1E3" a thousand.
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[numkMGTPE])?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(text: str) -> Decimal | None:
    """The exact value of a Kubernetes quantity, or None when ``text`` is not one."""
    match = _QUANTITY.match(text)
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number)
        if suffix in _BINARY:
            return value * _BINARY[suffix]
        exponent = int(suffix[1:]) if suffix[:1] in ("e", "E") and len(suffix) > 1 else _DECIMAL[suffix]
        return value.scaleb(exponent)
    except (ArithmeticError, ValueError):  # an exponent beyond Decimal's range
        return None


def quantity_check(name: str, *, maximum: str, whole: bool, unit: str) -> tuple[Any, CelRule]:
    """A resource amount: a Kubernetes quantity above 0 and at most ``maximum`` (the API server takes
    "1e999" as a quantity, but no node has it: a bound turns the typo into an error at apply);
    ``whole``: a whole number (a byte cannot be split; Kubernetes only warns about "100m" bytes)."""
    limit = parse_quantity(maximum)
    if limit is None:
        raise ValueError(f"maximum {maximum!r} is not a quantity")
    message = (f"must be a Kubernetes quantity of {'whole ' if whole else ''}{unit} above 0 and at most "
               f"{maximum}, e.g. {'2Gi or 512Mi' if whole else '1, 500m or 2.5'}")

    def check(value: str) -> str:
        amount = parse_quantity(value)
        # Whole as a double, like the CEL rule: CEL's isInteger() depends on how the quantity was
        # written ("2.0" and "1000m" are not integers to it), asApproximateFloat() does not.
        if amount is None or not 0 < amount <= limit or (whole and not float(amount).is_integer()):
            raise ValueError(f"{value!r} {message}")
        return value

    check.__name__ = f"_check_{name}"
    rule = (f"isQuantity(self) && quantity(self).isGreaterThan(quantity('0')) "
            f"&& quantity(self).compareTo(quantity('{maximum}')) <= 0"
            + (" && double(int(quantity(self).asApproximateFloat())) == quantity(self).asApproximateFloat()"
               if whole else ""))
    return check, CelRule(rule=rule, message=message)


class CamelModel(BaseModel):
    """Python attributes in snake_case, wire format in camelCase, unknown keys rejected.

    ``extra="forbid"`` is deliberate: a misspelt field in a spec must be an error naming it, never
    silently ignored (the CRD schema is generated from these models and is structural too).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    def to_wire(self) -> dict[str, object]:
        """The camelCase dict as it appears in a Kubernetes object, without unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(CamelModel):
    """metav1.Condition: a list of these keyed by ``type`` is the source of truth of a status."""

    type: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                              r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$", max_length=316,
                      description="the fact this condition states (CamelCase, e.g. Accepted, Ready)")
    status: ConditionStatus = Field(description="True, False or Unknown")
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024,
                        description="why, in one CamelCase word a program may match on")
    message: str = Field(default="", max_length=32768, description="why, for people")
    last_transition_time: datetime = Field(description="when status last changed")
    observed_generation: int | None = Field(default=None, ge=0,
                                            description="metadata.generation the condition was computed from")
