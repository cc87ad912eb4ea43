"""Every ``schemas/*.avsc`` matches the dataclass it encodes, field by field, both ways.

A record schema ``pipemedic.X`` encodes ``streams.policy.model.X`` (``X.to_dict()`` is what
``streams.codecs.encode`` writes; the file is ``x.avsc``, snake case). A ``<record>_batch``
schema is one ``items`` array of that record. For each pair: the same field names; a field
with a default in the dataclass has one in the schema (the same value) and the reverse; a
field that may be ``None`` is a ``["null", T]`` union; the types agree (``str`` string,
``int`` long, ``float`` double, ``bytes``, ``Mapping[str, str]`` a map of strings,
``tuple[T, ...]`` an array of T), nested records recursively.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from streams import codecs
from streams.policy import model

SCHEMA_DIR = Path(str(codecs.SCHEMA_DIR))
SCHEMAS = {path.stem: json.loads(path.read_text()) for path in sorted(SCHEMA_DIR.glob("*.avsc"))}
RECORDS = sorted(name for name in SCHEMAS if not name.endswith("_batch"))
BATCHES = sorted(name for name in SCHEMAS if name.endswith("_batch"))

PRIMITIVES: dict[str, type] = {
    "string": str,
    "long": int,
    "int": int,
    "double": float,
    "float": float,
    "bytes": bytes,
    "boolean": bool,
}


def full_name(schema: Mapping[str, Any]) -> str:
    return f"{schema.get('namespace', 'pipemedic')}.{schema['name']}"


NAMED = {full_name(schema): schema for schema in SCHEMAS.values()}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def type_problems(avro: Any, hint: Any, where: str, seen: set[str]) -> list[str]:
    """How the Avro type ``avro`` disagrees with the Python annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    if isinstance(avro, list) or optional:
        branches = [b for b in avro if b != "null"] if isinstance(avro, list) else [avro]
        if not (isinstance(avro, list) and "null" in avro) or not optional:
            return [f"{where}: schema {avro!r} vs {hint}: null on one side only"]
        inner = [a for a in args if a is not type(None)]
        if len(branches) != 1 or len(inner) != 1:
            return [f"{where}: only [null, T] unions are compared, not {avro!r} / {hint}"]
        return type_problems(branches[0], inner[0], where, seen)
    if isinstance(avro, str) and avro in PRIMITIVES:
        ok = hint is PRIMITIVES[avro]
        return [] if ok else [f"{where}: schema {avro} vs {getattr(hint, '__name__', hint)}"]
    if isinstance(avro, str):
        if avro not in NAMED:
            return [f"{where}: schema names an unknown type {avro}"]
        avro = NAMED[avro]
    kind = avro["type"]
    if kind == "record":
        return record_problems(avro, hint, where, seen)
    if kind == "map":
        if origin not in (Mapping, dict) or args[:1] != (str,):
            return [f"{where}: schema map vs {hint}"]
        return type_problems(avro["values"], args[1], f"{where}[]", seen)
    if kind == "array":
        homogeneous_tuple = origin is tuple and len(args) == 2 and args[1] is Ellipsis
        if not (homogeneous_tuple or (origin in (list, Sequence) and len(args) == 1)):
            return [f"{where}: schema array vs {hint}"]
        return type_problems(avro["items"], args[0], f"{where}[]", seen)
    return type_problems(kind, hint, where, seen)  # {"type": "string"} and the like


def record_problems(schema: Mapping[str, Any], cls: Any, where: str, seen: set[str]) -> list[str]:
    """How record ``schema`` disagrees with dataclass ``cls``, nested records included."""
    if not (dataclasses.is_dataclass(cls) and cls.__name__ == schema["name"]):
        return [f"{where}: schema record {schema['name']} vs {cls}"]
    if full_name(schema) in seen:  # already compared (or being compared) on this path
        return []
    seen = seen | {full_name(schema)}
    hints = typing.get_type_hints(cls)
    ours = {f.name: f for f in dataclasses.fields(cls)}
    theirs = {f["name"]: f for f in schema["fields"]}
    problems = [f"{where}.{n}: in the schema, not in {cls.__name__}" for n in theirs.keys() - ours]
    problems += [f"{where}.{n}: in {cls.__name__}, not in the schema" for n in ours.keys() - theirs]
    for name in [n for n in theirs if n in ours]:
        at = f"{where}.{name}"
        problems += default_problems(theirs[name], ours[name], at)
        problems += type_problems(theirs[name]["type"], hints[name], at, seen)
    return problems


def default_problems(
    avro: Mapping[str, Any], ours: dataclasses.Field[Any], where: str
) -> list[str]:
    if ours.default is not dataclasses.MISSING:
        default = ours.default
    elif ours.default_factory is not dataclasses.MISSING:
        default = ours.default_factory()
    else:
        return [f"{where}: a default in the schema only"] if "default" in avro else []
    if "default" not in avro:
        return [f"{where}: a default in the dataclass only ({default!r})"]
    if isinstance(default, tuple):  # what to_dict hands the encoder
        default = list(default)
    elif isinstance(default, Mapping):
        default = dict(default)
    if avro["default"] != default or type(avro["default"]) is not type(default):
        return [f"{where}: default {avro['default']!r} in the schema, {default!r} in the dataclass"]
    return []


@pytest.mark.parametrize("name", RECORDS)
def test_record_schema_matches_its_dataclass(name: str) -> None:
    schema = SCHEMAS[name]
    assert snake(schema["name"]) == name, "the file is named after the record, in snake case"
    cls = getattr(model, schema["name"], None)
    assert cls is not None, f"schemas/{name}.avsc: no {schema['name']} in streams/policy/model.py"
    problems = record_problems(schema, cls, schema["name"], set())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", BATCHES)
def test_batch_schema_holds_items_of_its_record(name: str) -> None:
    schema, record = SCHEMAS[name], SCHEMAS[name.removesuffix("_batch")]
    assert schema["name"] == f"{record['name']}Batch"
    assert schema["fields"] == [
        {"name": "items", "type": {"type": "array", "items": full_name(record)}}
    ]
    cls = getattr(model, record["name"])
    problems = type_problems(schema["fields"][0]["type"], tuple[cls, ...], name, set())
    assert not problems, "\n".join(problems)


def test_every_schema_is_loaded_and_every_record_class_has_one() -> None:
    assert set(codecs._ORDER) == set(SCHEMAS)
    assert set(codecs.BATCHED) <= {b.removesuffix("_batch") for b in BATCHES}
    encoded = {
        cls.__name__
        for cls in vars(model).values()
        if dataclasses.is_dataclass(cls) and hasattr(cls, "to_dict")
    }
    assert encoded == {schema["name"] for schema in map(SCHEMAS.get, RECORDS)}


# the comparison itself: a drifted schema is caught, in either direction, nested too
ALERT = NAMED["pipemedic.Alert"]


def with_fields(schema: Mapping[str, Any], fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {**schema, "fields": fields}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (ALERT["fields"][:-1], "details: in Alert, not in the schema"),
        ([*ALERT["fields"], {"name": "colour", "type": "string"}], "colour: in the schema"),
        ([{**f, "type": "long"} if f["name"] == "message" else f for f in ALERT["fields"]], "long"),
        ([{**f, "default": "x"} if f["name"] == "run_id" else f for f in ALERT["fields"]], "'x'"),
        (
            [{k: v for k, v in f.items() if k != "default"} for f in ALERT["fields"]],
            "dataclass only",
        ),
        ([{**f, "type": ["null", f["type"]]} for f in ALERT["fields"]], "null on one side only"),
    ],
    ids=["field missing", "field extra", "type", "default value", "default missing", "nullable"],
)
def test_a_drifted_schema_is_caught(fields: list[dict[str, Any]], says: str) -> None:
    problems = record_problems(with_fields(ALERT, fields), model.Alert, "Alert", set())
    assert any(says in p for p in problems), problems


def test_a_drifted_nested_record_is_caught() -> None:
    event = NAMED["pipemedic.ChainEvent"]
    inline = with_fields(ALERT, [f for f in ALERT["fields"] if f["name"] != "scope"])
    fields = [{**f, "type": inline} if f["name"] == "alert" else f for f in event["fields"]]
    problems = record_problems(with_fields(event, fields), model.ChainEvent, "ChainEvent", set())
    assert problems == ["ChainEvent.alert.scope: in Alert, not in the schema"]
