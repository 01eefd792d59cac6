"""The one loader for endpoint files: HCL text -> plain dicts -> `skiff_core.spec.EndpointSpec`.

python-hcl2 8.x is a faithful *syntax* parser but a loose *HCL* one, so everything it leaves to
its caller is settled here and nowhere else:

- string values come back in their source form, quotes and escapes included (`"\\"queue\\""`);
- anything that is not a literal (`var.x`, `1 + 2`, `"${...}"`) comes back as a `"${...}"` string;
- a repeated argument silently overwrites the first one;
- it accepts layouts Terraform and Nomad reject (`{ a = 1  b = 2 }`, `a = 1 b = 2` on one line);
- `SerializationOptions.with_meta` is declared but not implemented in 8.1.4, so line numbers are
  read from the rule tree (`hcl2.parses`), whose nodes keep lark's positions in `_meta`
  (lark is built with `propagate_positions=True` in `hcl2/parser.py`).

Every problem found in every file is collected before anything is raised, so `skiff validate`
can print them all at once.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import hcl2
from hcl2.rules.base import AttributeRule, BlockRule, BodyRule
from hcl2.utils import SerializationOptions, process_escape_sequences
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from pydantic import BaseModel, ValidationError

from skiff_core.spec import EndpointSpec

__all__ = [
    "EndpointFileError",
    "Problem",
    "endpoint_files",
    "load_endpoint_file",
    "load_endpoints",
]

BLOCK_TYPE = "endpoint"

# Values as a program reads them: heredocs as plain strings, 1e3 as 1000.0, no comment keys.
_VALUE_OPTIONS = SerializationOptions(with_comments=False, preserve_heredocs=False, preserve_scientific_notation=False)
# In a quoted HCL string `$${` and `%%{` are escapes; `${` and `%{` open a template.
_TEMPLATE_MARK = re.compile(r"\$\$\{|%%\{|\$\{|%\{")

_Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an endpoint file. `line` is 1-based, None where nothing points at one."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class EndpointFileError(ValueError):
    """Endpoint files that cannot be used, with every problem found in all of them."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


@dataclass(frozen=True)
class _Declared:
    spec: EndpointSpec
    file: str
    line: int


class _NotLiteral(ValueError):
    pass


# ---------------------------------------------------------------------------------------------
# Public API


def endpoint_files(directory: str | Path) -> list[Path]:
    """The endpoint files of a directory, sorted; editor backups and lock files (`.#x.hcl`) skipped."""
    return sorted(p for p in Path(directory).glob("*.hcl") if p.is_file() and not p.name.startswith("."))


def load_endpoint_file(path: str | Path) -> list[EndpointSpec]:
    """Every endpoint declared in one file, in file order. Raises EndpointFileError."""
    declared, problems = _read_file(Path(path))
    problems += _duplicates(declared)
    if problems:
        raise EndpointFileError(problems)
    return [d.spec for d in declared]


def load_endpoints(directory: str | Path) -> dict[str, EndpointSpec]:
    """Every endpoint of every `*.hcl` file in a directory, by name. Raises EndpointFileError
    listing the problems of all files (a missing directory is one problem too)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EndpointFileError([Problem(str(directory), None, "", "no such directory")])
    declared: list[_Declared] = []
    problems: list[Problem] = []
    for path in endpoint_files(directory):
        found, file_problems = _read_file(path)
        declared += found
        problems += file_problems
    problems += _duplicates(declared)
    if problems:
        raise EndpointFileError(problems)
    return {d.spec.name: d.spec for d in declared}


# ---------------------------------------------------------------------------------------------
# Files and syntax


def _read_file(path: Path) -> tuple[list[_Declared], list[Problem]]:
    file = str(path)
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return [], [Problem(file, None, "", f"not UTF-8 text (byte {exc.start})")]
    except OSError as exc:
        return [], [Problem(file, None, "", f"cannot read: {exc.strerror or exc}")]
    try:
        tree = hcl2.parses(source)
    except UnexpectedInput as exc:
        # hcl2 parses the text plus a "\n", so an error at the very end points one line past it.
        last = max(1, len(source.splitlines()))
        line = min(exc.line, last) if isinstance(exc.line, int) and exc.line > 0 else None
        return [], [Problem(file, line, "", _syntax_message(exc))]
    except Exception as exc:  # python-hcl2's transformer raises bare RuntimeError/ValueError
        return [], [Problem(file, None, "", f"cannot parse HCL: {exc}")]
    declared, problems = _FileReader(file, source).read(tree.body)
    # Structural problems are found before pydantic's: report them all in file order.
    return declared, sorted(problems, key=lambda p: p.line or 0)


_TERMINALS = {
    "RBRACE": "`}`",
    "LBRACE": "`{`",
    "RSQB": "`]`",
    "LSQB": "`[`",
    "RPAR": "`)`",
    "DBLQUOTE": '`"`',
    "EQ": "`=`",
    "COMMA": "`,`",
    "NAME": "a name",
    "NL_OR_COMMENT": "a new line",
    "INT_LITERAL": "a number",
    "FLOAT_LITERAL": "a number",
}


def _syntax_message(exc: UnexpectedInput) -> str:
    column = getattr(exc, "column", None)
    at = f" (column {column})" if isinstance(column, int) and column > 0 else ""
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        text = str(exc.token).strip().splitlines()
        found = f"`{text[0][:30]}`" if text else "a line break"
        expected = sorted({_TERMINALS[t] for t in exc.expected if t in _TERMINALS})
        hint = f"; expected {' or '.join(expected)}" if expected else ""
        return f"syntax error: unexpected {found}{at}{hint}"
    if isinstance(exc, UnexpectedCharacters):
        return f"syntax error: unexpected character {exc.char!r}{at}"
    if isinstance(exc, UnexpectedEOF | UnexpectedToken):
        return 'syntax error: unexpected end of file (an unclosed `{`, `[` or `"`?)'
    return f"syntax error{at}"


# ---------------------------------------------------------------------------------------------
# Structure: blocks, arguments, layout


def _line(node: Any) -> int:
    return int(node._meta.line)


def _span(node: Any) -> tuple[int, int]:
    return int(node._meta.start_pos), int(node._meta.end_pos)


def _nested_model(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    """The model of a field written as a block (`scaling { ... }`), None for an argument."""
    annotation = model.model_fields[field].annotation
    candidates = (annotation, *get_args(annotation)) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _labeled_model(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    """The model of a field written as labeled blocks (`volume "models" { ... }`, a
    dict[str, Model] by label), None otherwise."""
    annotation = model.model_fields[field].annotation
    if get_origin(annotation) is dict:
        value = get_args(annotation)[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value
    return None


def _known(model: type[BaseModel]) -> list[str]:
    return [name for name in model.model_fields if not (model is EndpointSpec and name == "name")]


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean `{close[0]}`? " if close else ""


def _dotted(path: _Loc) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _FileReader:
    def __init__(self, file: str, source: str) -> None:
        self.file = file
        self.source = source
        self.problems: list[Problem] = []

    def problem(self, line: int | None, field: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, field, message))

    def read(self, body: BodyRule) -> tuple[list[_Declared], list[Problem]]:
        items = self._items(body)
        self._check_separated(items)
        declared: list[_Declared] = []
        for item in items:
            if isinstance(item, AttributeRule):
                name = _name_of(item)
                self.problem(
                    _line(item),
                    name,
                    f'only `{BLOCK_TYPE} "name" {{ ... }}` blocks may appear at the top level of a file',
                )
                continue
            kind = _name_of(item)
            if kind != BLOCK_TYPE:
                self.problem(_line(item), kind, f'unknown block type; expected `{BLOCK_TYPE} "name" {{ ... }}`')
                continue
            spec = self._endpoint(item)
            if spec is not None:
                declared.append(_Declared(spec, self.file, _line(item)))
        return declared, self.problems

    @staticmethod
    def _items(body: BodyRule) -> list[AttributeRule | BlockRule]:
        return [c for c in body.children if isinstance(c, AttributeRule | BlockRule)]

    def _endpoint(self, block: BlockRule) -> EndpointSpec | None:
        line = _line(block)
        labels = block.labels[1:]
        if len(labels) != 1:
            self.problem(line, BLOCK_TYPE, f'takes exactly one label, its name: `{BLOCK_TYPE} "echo" {{ ... }}`')
            return None
        try:
            name = _label(labels[0])
        except _NotLiteral as exc:
            self.problem(line, BLOCK_TYPE, f"the name must be a plain string: {exc}")
            return None
        before = len(self.problems)
        lines: dict[_Loc, int] = {(): line, ("name",): line}
        dropped: set[_Loc] = set()
        data = self._body(block, EndpointSpec, (), lines, dropped, f'{BLOCK_TYPE} "{name}"')
        data["name"] = name
        try:
            spec = EndpointSpec.model_validate(data)
        except ValidationError as exc:
            self._validation_problems(exc, name, lines, dropped)
            return None
        return spec if len(self.problems) == before else None

    def _body(
        self,
        block: BlockRule,
        model: type[BaseModel],
        path: tuple[str, ...],
        lines: dict[_Loc, int],
        dropped: set[_Loc],
        title: str,
    ) -> dict[str, Any]:
        items = self._items(block.body)
        self._check_layout(block, items, title)
        known = _known(model)
        data: dict[str, Any] = {}
        for item in items:
            name = _name_of(item)
            where = (*path, name)
            field = _dotted(where)
            if model is EndpointSpec and name == "name":
                self.problem(_line(item), field, f'the name is the block\'s label: `{BLOCK_TYPE} "name" {{`')
                continue
            if name not in known:
                blocks = [k for k in known if _nested_model(model, k) or _labeled_model(model, k)]
                what, choices = ("block", blocks) if isinstance(item, BlockRule) else ("field", known)
                self.problem(
                    _line(item),
                    field,
                    f"unknown {what}; {_did_you_mean(name, known)}expected one of: "
                    + (", ".join(choices) or "none here"),
                )
                continue
            labeled = _labeled_model(model, name)
            if labeled is not None:
                self._labeled_block(item, labeled, where, data, lines, dropped)
                continue
            if where in lines:
                self.problem(_line(item), field, f"set more than once (first on line {lines[where]})")
                dropped.add(where)
                continue
            lines[where] = _line(item)
            nested = _nested_model(model, name)
            if isinstance(item, BlockRule):
                if nested is None:
                    self.problem(_line(item), field, f"is an argument, not a block: write `{name} = ...`")
                    dropped.add(where)
                elif len(item.labels) > 1:
                    self.problem(_line(item), field, f"takes no label: write `{name} {{ ... }}`")
                    dropped.add(where)
                else:
                    data[name] = self._body(item, nested, where, lines, dropped, field)
                continue
            if nested is not None:
                self.problem(_line(item), field, f"is a block, not an argument: write `{name} {{ ... }}`")
                dropped.add(where)
                continue
            try:
                data[name] = _literal(item.expression.serialize(_VALUE_OPTIONS))
            except _NotLiteral as exc:
                self.problem(_line(item), field, str(exc))
                dropped.add(where)
            except Exception as exc:  # python-hcl2 serializers raise bare errors on odd expressions
                self.problem(_line(item), field, f"cannot read this value: {exc}")
                dropped.add(where)
        return data

    def _labeled_block(
        self,
        item: AttributeRule | BlockRule,
        model: type[BaseModel],
        where: tuple[str, ...],
        data: dict[str, Any],
        lines: dict[_Loc, int],
        dropped: set[_Loc],
    ) -> None:
        name, field = where[-1], _dotted(where)
        if not isinstance(item, BlockRule):
            self.problem(_line(item), field, f'is a block with a label: write `{name} "label" {{ ... }}`')
            return
        if len(item.labels) != 2:
            self.problem(_line(item), field, f'takes exactly one label: `{name} "label" {{ ... }}`')
            return
        try:
            label = _label(item.labels[1])
        except _NotLiteral as exc:
            self.problem(_line(item), field, f"the label must be a plain string: {exc}")
            return
        at = (*where, label)
        if at in lines:
            self.problem(_line(item), _dotted(at), f"declared more than once (first on line {lines[at]})")
            dropped.add(at)
            return
        lines.setdefault(where, _line(item))
        lines[at] = _line(item)
        data.setdefault(name, {})[label] = self._body(item, model, at, lines, dropped, f'{name} "{label}"')

    def _validation_problems(self, exc: ValidationError, name: str, lines: dict[_Loc, int], dropped: set[_Loc]) -> None:
        for error in exc.errors(include_url=False):
            loc: _Loc = tuple(error["loc"])
            # A field already reported (bad literal, duplicate) is absent from the data: pydantic's
            # follow-on complaints about it, or about the object around it, would only be noise.
            if any(loc[: len(d)] == d or d[: len(loc)] == loc for d in dropped):
                continue
            line = next(lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines)
            self.problem(line, _dotted(loc) or f'{BLOCK_TYPE} "{name}"', _pydantic_message(error))

    # HCL's layout rules (https://github.com/hashicorp/hcl/blob/main/hclsyntax/spec.md, "Structural
    # Elements"): a block on one line holds at most one argument; otherwise `{` ends the header line,
    # `}` sits on its own line, and every argument or block starts on a line of its own.
    def _check_layout(self, block: BlockRule, items: list[AttributeRule | BlockRule], field: str) -> None:
        end = _span(block)[1]
        brace = self.source.find("{", _span(block.labels[-1])[1], end)
        if brace < 0 or not items:
            return
        if "\n" not in self.source[brace:end]:
            if len(items) > 1 or isinstance(items[0], BlockRule):
                self.problem(
                    _line(block),
                    field,
                    "a block written on one line may hold only one argument (Terraform and Nomad "
                    "reject more); put each argument on its own line",
                )
            return
        if "\n" not in self.source[brace : _span(items[0])[0]]:
            self.problem(_line(items[0]), field, "start the block's first argument on the line after `{`")
        if not self._separated(items[-1], end - 1):
            self.problem(_line(items[-1]), field, "put the block's closing `}` on a line of its own")
        self._check_separated(items)

    def _check_separated(self, items: list[AttributeRule | BlockRule]) -> None:
        for before, after in itertools.pairwise(items):
            if not self._separated(before, _span(after)[0]):
                self.problem(
                    _line(after),
                    _name_of(after),
                    f"starts on the same line as `{_name_of(before)}`; put each argument on its own line",
                )

    def _separated(self, node: AttributeRule | BlockRule, next_start: int) -> bool:
        start, end = _span(node)
        # Some nodes (heredocs, operators) end *after* the newline that follows them.
        return self.source[start:end].rstrip(" \t\r").endswith("\n") or "\n" in self.source[end:next_start]


def _name_of(item: AttributeRule | BlockRule) -> str:
    if isinstance(item, AttributeRule):
        return str(item.identifier.serialize())
    return str(item.labels[0].serialize())


def _label(label: Any) -> str:
    raw = label.serialize()
    return _literal(raw) if isinstance(raw, str) and raw.startswith('"') else str(raw)


# ---------------------------------------------------------------------------------------------
# Values


def _literal(value: Any) -> Any:
    """python-hcl2's source-form value -> the plain value, or _NotLiteral for an expression."""
    if isinstance(value, str):
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            return _string(value[1:-1])
        expression = value[2:-1] if value.startswith("${") and value.endswith("}") else value
        raise _NotLiteral(
            f"expressions are not supported here (got `{expression}`); write a literal value, "
            'e.g. a quoted string "..." or a number'
        )
    if isinstance(value, list):
        return [_literal(v) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _literal(key) if isinstance(key, str) and key.startswith('"') else key
            if isinstance(name, str) and name.startswith("${"):
                raise _NotLiteral(f"map keys must be names or quoted strings (got `{name[2:-1]}`)")
            out[str(name)] = _literal(item)
        return out
    return value  # bool, int, float, None


def _string(inner: str) -> str:
    for mark in _TEMPLATE_MARK.finditer(inner):
        if mark.group() in ("${", "%{"):
            raise _NotLiteral(
                f'templates are not supported (got "{inner}"); write the value out, or escape a literal `${{` as `$${{`'
            )
    unescaped = process_escape_sequences(inner)
    return unescaped.replace("$${", "${").replace("%%{", "%{")


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _pydantic_message(error: Any) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    got = f"(got {_show(error.get('input'))})"
    bounds = {
        "greater_than_equal": ("ge", ">="),
        "greater_than": ("gt", ">"),
        "less_than_equal": ("le", "<="),
        "less_than": ("lt", "<"),
    }
    if kind in bounds:
        key, op = bounds[kind]
        return f"must be {op} {ctx.get(key)} {got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number {got}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number {got}"
    if kind == "string_type":
        return f"must be a quoted string {got}"
    if kind == "list_type":
        return f'must be a list such as ["a", "b"] {got}'
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f'must be a map such as {{ KEY = "value" }} {got}'
    if kind == "enum":
        return f"must be {ctx.get('expected')} {got}"
    if kind == "missing":
        return "is required"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']} {got}"


def _duplicates(declared: list[_Declared]) -> list[Problem]:
    first: dict[str, _Declared] = {}
    problems = []
    for d in declared:
        seen = first.setdefault(d.spec.name, d)
        if seen is not d:
            problems.append(
                Problem(
                    d.file,
                    d.line,
                    f'{BLOCK_TYPE} "{d.spec.name}"',
                    f"declared more than once (first in {seen.file}:{seen.line})",
                )
            )
    return problems
