"""One declarative way to read structured input: the config, the inventory, Dispatcharr's answers.

A document is read object by object. A :class:`Reader` holds one object (a
TOML table, a JSON object) and where it stands in the document (``[check]``,
``streams[3]``, ``[2].profiles[0]``); :meth:`Reader.read` walks it against a
spec, a mapping of key to :class:`Field` (what kind of value, its default,
its bounds). A wrong value never raises: it becomes a :class:`Problem` that
names the field, the default stands in, and reading goes on, so one
:class:`InputError` at the end names *every* bad field at once. Unknown keys
get a "did you mean" hint where the document may not have any
(:meth:`Reader.reject_unknown`, the config's tables).

Each kind of document words its problems its own, established way; a
:class:`Dialect` holds that wording (``must be`` or ``expected``, how a wrong
value is shown, TOML or JSON paths), so the one reader keeps every message.

pydantic, msgspec and cattrs were weighed and not taken: msgspec stops at the
first error; pydantic collects them all but words them its own way ("Input
should be a valid integer", "Extra inputs are not permitted", no close-match
hint), coerces ``"5"`` to ``5`` unless strict, and rendering its error list
back into these messages is more code than this module; cattrs reports an
exception group with no field paths in the text. None is installed, and the
readers here need only typed getters, bounds and a path.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

Kind = Literal["int", "number", "bool", "str", "id", "list", "object", "any"]
"""``id``: an integer or a non-empty string (a channel named by id, name or UUID)."""

REQUIRED: Final[Any] = object()
"""The default of a :class:`Field` that must be present."""

_MAX_SHOWN = 60
"""A wrong value is shown up to this many characters."""
_MAX_LISTED = 20
"""An :class:`InputError` lists this many problems, then counts the rest."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input.

    Attributes:
        field: Where, e.g. ``[check] duration`` or ``streams[3].url``; ``""``
            for the whole document.
        message: What is wrong, e.g. ``must be a number > 0, got 0``.
    """

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InputError(Exception):
    """Input (a file, an answer) that cannot be used: every problem found in it.

    ``str()`` is one line: the source, then each problem (``field: message``)
    joined with ``"; "``.

    Attributes:
        source: The file or endpoint, e.g. ``config.toml``, ``/api/m3u/accounts/``.
        problems: What is wrong, in document order.
        missing: The source does not exist at all (a viewer file not written
            yet, as opposed to a bad one).
    """

    def __init__(
        self, source: str, problems: Sequence[Problem | str], *, missing: bool = False
    ) -> None:
        self.source = source
        self.problems = tuple(p if isinstance(p, Problem) else Problem("", p) for p in problems)
        self.missing = missing
        shown = [str(p) for p in self.problems[:_MAX_LISTED]]
        if len(self.problems) > _MAX_LISTED:
            shown.append(f"and {len(self.problems) - _MAX_LISTED} more problems")
        super().__init__(f"{source}: " + "; ".join(shown))

    @property
    def field(self) -> str:
        """The first problem's field."""
        return self.problems[0].field if self.problems else ""

    @property
    def detail(self) -> str:
        """The first problem's message."""
        return self.problems[0].message if self.problems else ""


class Problems:
    """The problems found so far in one document; :meth:`check` raises them all."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[Problem] = []

    def add(self, where: str, message: str) -> None:
        """Note that ``where`` is wrong."""
        self.found.append(Problem(where, message))

    def __len__(self) -> int:
        return len(self.found)

    def check(self, error: Callable[[str, list[Problem]], Exception] = InputError) -> None:
        """Raise ``error(source, problems)`` if anything was found.

        Raises:
            InputError: (or what ``error`` makes) with every problem.
        """
        if self.found:
            raise error(self.source, list(self.found))


# --- how each kind of document words its problems ---------------------------------


def json_kind(value: object, *, list_word: str = "an array") -> str:
    """The JSON type of ``value`` for a message: ``"a string"``, ``"null"``..."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return list_word
    for types, name in _JSON_KINDS:
        if isinstance(value, types):
            return name
    return type(value).__name__


_JSON_KINDS: Final[tuple[tuple[type | tuple[type, ...], str], ...]] = (
    (bool, "a boolean"),  # before int: a bool is an int
    ((int, float), "a number"),
    (str, "a string"),
    (dict, "an object"),
)


def show_json(value: object) -> str:
    """``value`` as JSON, containers by their kind, shortened to one short line."""
    if isinstance(value, dict | list):
        return json_kind(value, list_word="a list")
    return _shorten(json.dumps(value, ensure_ascii=False, default=str))


def show_toml(value: object) -> str:
    """``value`` as it would look in TOML, shortened to one short line."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(show_toml(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "a table"
    else:
        text = str(value)
    return _shorten(text)


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


_NOUNS: Final[Mapping[Kind, str]] = {
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "str": "a string",
    "id": "an integer or a non-empty string",
    "list": "a list",
    "object": "an object",
    "any": "a value",
}


@dataclass(frozen=True)
class Dialect:
    """How one kind of document words a wrong value.

    Attributes:
        expect: ``"must be"`` (``must be a string, got 5``) or ``"expected"``.
        show: How a wrong value is shown (``5``, ``"x"``, ``a string``).
        kind_of: How a value that should be an object or a list is shown.
        nouns: What each kind is called, where it differs from the usual.
        bounds_in_noun: ``must be an integer >= 0, got -1`` (the bound is part
            of what the value must be); else ``must be at least 0, got -1``.
        toml: Paths are ``[table] key`` rather than ``a.b[0].c``.
    """

    expect: str
    show: Callable[[object], str]
    kind_of: Callable[[object], str]
    nouns: Mapping[Kind, str] = field(default_factory=dict)
    bounds_in_noun: bool = True
    toml: bool = False

    def noun(self, kind: Kind) -> str:
        """What a value of ``kind`` is called in a message (``"an integer"``)."""
        return self.nouns.get(kind, _NOUNS[kind])


TOML: Final = Dialect("must be", show_toml, show_toml, {"object": "a table"}, toml=True)
"""The config file's wording: ``[check] duration: must be a number > 0, got 0``."""
JSON_FILE: Final = Dialect("must be", show_json, lambda v: json_kind(v, list_word="a list"))
"""The inventory and viewer files': ``streams[0].url: must be a string, got 5``."""
API: Final = Dialect("expected", json_kind, json_kind, {"list": "an array"}, bounds_in_noun=False)
"""Dispatcharr's answers': ``[2].max_streams: expected an integer, got null``."""


# --- fields -----------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """What one key of an object must hold.

    Attributes:
        kind: The type of the value (ints are numbers too; booleans are neither).
        default: What an absent key gives; :data:`REQUIRED`: an absent key is
            a problem (``missing``).
        minimum: The least value (inclusive) of a number or an integer.
        above: The value must be greater than this (``> 0``).
        maximum: The greatest value (inclusive).
        choices: The strings allowed; compared lower-cased when ``fold``.
        null_absent: JSON ``null`` counts as an absent key.
        digits: A string of digits counts as an integer (Dispatcharr's ids).
        nonempty: A string must not be blank.
        items: What each item of a ``list`` must be; bad items are dropped.
        noun: What the message says the value must be, instead of one made
            from the kind and bounds.
        check: A last test of a value of the right kind: returns the problem,
            or ``None`` when the value is good.
    """

    kind: Kind
    default: Any = REQUIRED
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    fold: bool = False
    null_absent: bool = True
    digits: bool = False
    nonempty: bool = False
    items: Field | None = None
    noun: str | None = None
    check: Callable[[Any], str | None] | None = None

    def with_default(self, default: object) -> Field:
        """This field with another default."""
        return replace(self, default=default)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bounds(spec: Field) -> str:
    if spec.minimum is not None and spec.maximum is not None:
        return f" from {spec.minimum:g} to {spec.maximum:g}"
    if spec.above is not None:
        return f" > {spec.above:g}"
    if spec.minimum is not None:
        return f" >= {spec.minimum:g}"
    return ""


class Reader:
    """One object of a document being read: fields in, problems noted.

    Args:
        data: The object.
        where: Its place in the document (``""`` for the root).
        problems: Where problems go (shared by the whole document).
        dialect: How problems are worded.
    """

    def __init__(
        self, data: Mapping[str, Any], where: str, problems: Problems, dialect: Dialect
    ) -> None:
        self.data = data
        self.where = where
        self.problems = problems
        self.dialect = dialect
        self.asked: set[str] = set()

    @classmethod
    def of(cls, value: object, where: str, problems: Problems, dialect: Dialect) -> Reader | None:
        """A reader of ``value``, or ``None`` (and a problem) when it is not an object."""
        if not isinstance(value, dict):
            noun = dialect.noun("object")
            problems.add(where, f"{dialect.expect} {noun}, got {dialect.kind_of(value)}")
            return None
        return cls(value, where, problems, dialect)

    def path(self, key: str | int) -> str:
        """Where ``key`` (a name or a list index) of this object stands."""
        if isinstance(key, int):
            return f"{self.where}[{key}]"
        if self.dialect.toml:
            return f"{self.where} {key}" if self.where else key
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str | int | None, message: str) -> None:
        """Note a problem with ``key`` (``None``: with this whole object)."""
        self.problems.add(self.where if key is None else self.path(key), message)

    def get(self, key: str, spec: Field) -> Any:
        """The value of ``key`` as ``spec`` says, or its default after a problem."""
        self.asked.add(key)
        default = None if spec.default is REQUIRED else spec.default
        if key not in self.data or (self.data[key] is None and spec.null_absent):
            if spec.default is REQUIRED:
                self.fail(key, "missing")
            return default
        value = self.data[key]
        problem = self._problem(value, spec)
        if problem is not None:
            self.fail(key, problem)
            return default
        return self._convert(key, value, spec)

    def value(self, where: str, value: object, spec: Field) -> Any:
        """``value``, found at ``where`` (a list item, a key that is data), as ``spec`` says.

        Returns the default (``None`` for a required one) after a problem.
        """
        problem = self._problem(value, spec)
        if problem is not None:
            self.problems.add(where, problem)
            return None if spec.default is REQUIRED else spec.default
        return value

    def read(self, spec: Mapping[str, Field]) -> dict[str, Any]:
        """Every key of ``spec``, by :meth:`get`."""
        return {key: self.get(key, item) for key, item in spec.items()}

    def child(self, key: str) -> Reader | None:
        """The object under ``key``; ``None`` when absent or null, or (a problem) not an object."""
        self.asked.add(key)
        value = self.data.get(key)
        if value is None:
            return None
        return Reader.of(value, self.path(key), self.problems, self.dialect)

    def items(self, key: str, *, required: bool = False) -> Iterator[tuple[str, object]]:
        """Each item of the list under ``key`` with its place.

        Absent or null is empty, or a problem (``missing``) when ``required``.
        """
        self.asked.add(key)
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(key, "missing")
            return
        if not isinstance(value, list):
            noun = self.dialect.noun("list")
            self.fail(key, f"{self.dialect.expect} {noun}, got {self.dialect.kind_of(value)}")
            return
        for index, item in enumerate(value):
            yield self.path(key) + f"[{index}]", item

    def objects(self, key: str, *, required: bool = False) -> Iterator[Reader]:
        """A reader of each object in the list under ``key``; other items are problems."""
        for where, item in self.items(key, required=required):
            reader = Reader.of(item, where, self.problems, self.dialect)
            if reader is not None:
                yield reader

    def reject_unknown(self, label: str = "key") -> None:
        """A problem for each key no getter asked for, with the closest known key."""
        for key in self.data:
            if key not in self.asked:
                self.problems.add(
                    "", f"unknown {label} {self.path(key)}{did_you_mean(key, self.asked)}"
                )

    # --- checks -------------------------------------------------------------------

    def _wrong(self, kind: Kind, value: object, noun: str | None = None) -> str:
        what = noun or self.dialect.noun(kind)
        return f"{self.dialect.expect} {what}, got {self.dialect.show(value)}"

    def _problem(self, value: object, spec: Field) -> str | None:
        noun = spec.noun
        if noun is None and self.dialect.bounds_in_noun:
            noun = self.dialect.noun(spec.kind) + _bounds(spec)
        if not _KIND_OK[spec.kind](spec, value):
            return self._wrong(spec.kind, value, noun)
        if spec.kind in ("int", "number"):
            problem = self._bounds_problem(value, spec, noun)
            if problem is not None:
                return problem
        if spec.nonempty and isinstance(value, str) and not value.strip():
            return "must not be empty"
        if spec.choices:
            wanted = value.lower() if spec.fold and isinstance(value, str) else value
            if wanted not in spec.choices:
                names = ", ".join(json.dumps(c) for c in spec.choices)
                return f"must be one of {names}, got {self.dialect.show(value)}"
        return spec.check(value) if spec.check is not None else None

    def _bounds_problem(self, value: Any, spec: Field, noun: str | None) -> str | None:
        number = float(int(value.strip()) if isinstance(value, str) else value)
        low = spec.minimum is not None and number < spec.minimum
        high = spec.maximum is not None and number > spec.maximum
        if not (low or high or (spec.above is not None and number <= spec.above)):
            return None
        if spec.minimum is not None and spec.maximum is not None:
            return f"must be from {spec.minimum:g} to {spec.maximum:g}, got {value}"
        if self.dialect.bounds_in_noun:
            return self._wrong(spec.kind, value, noun)
        return f"must be at least {spec.minimum:g}, got {value}"

    def _convert(self, key: str, value: Any, spec: Field) -> Any:
        if spec.kind == "int" and isinstance(value, str):
            return int(value.strip())
        if spec.kind == "number":
            return float(value)
        if spec.kind == "list" and spec.items is not None:
            items = spec.items
            checked = [self.value(f"{self.path(key)}[{i}]", v, items) for i, v in enumerate(value)]
            return [v for v in checked if v is not None]
        if spec.choices and spec.fold:
            return value.lower()
        return value


def _digits(value: object) -> bool:
    """A string of ASCII digits, spaces around allowed (``" 12"``; not ``"²"``)."""
    return isinstance(value, str) and value.isascii() and value.strip().isdigit()


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_KIND_OK: Final[Mapping[Kind, Callable[[Field, object], bool]]] = {
    "int": lambda spec, v: _is_int(v) or (spec.digits and _digits(v)),
    "number": lambda _, v: _number(v),
    "bool": lambda _, v: isinstance(v, bool),
    "str": lambda _, v: isinstance(v, str),
    "id": lambda _, v: _is_int(v) or (isinstance(v, str) and bool(v.strip())),
    "list": lambda _, v: isinstance(v, list),
    "object": lambda _, v: isinstance(v, dict),
    "any": lambda _, v: True,
}
"""Whether a value is of the field's kind (ints are numbers; booleans are neither)."""


def did_you_mean(key: str, known: Sequence[str] | set[str]) -> str:
    """`` (did you mean "x"?)`` for the known key closest to ``key``, else ``""``."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {json.dumps(close[0])}?)" if close else ""
