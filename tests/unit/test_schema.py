"""Schema declarations: names and indexes are checked when declared."""

from __future__ import annotations

import pytest

from pysync.errors import SchemaError
from pysync.schema import Collection, Index, Schema


def test_a_schema_finds_its_collections_and_their_indexes() -> None:
    schema = Schema(Collection("todos", indexes=(Index("by_done", "done"),)))
    assert "todos" in schema
    assert "notes" not in schema
    assert schema.get("todos").index("by_done").fields == ("done",)


@pytest.mark.parametrize("name", ["", "1st", "a#b", "a b", "x" * 65])
def test_a_collection_name_must_be_an_identifier_without_hash(name: str) -> None:
    with pytest.raises(SchemaError):
        Collection(name)


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(SchemaError):
        Collection("todos", strategy="newest")  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["_v", "a.b"])
def test_an_index_on_a_reserved_or_dotted_field_is_refused(field: str) -> None:
    with pytest.raises(SchemaError):
        Index("by_x", field)


def test_an_index_names_at_least_one_field() -> None:
    with pytest.raises(SchemaError):
        Index("by_nothing")


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(SchemaError):
        Schema(Collection("todos"), Collection("todos"))
    with pytest.raises(SchemaError):
        Collection("todos", indexes=(Index("a", "x"), Index("a", "y")))


def test_unknown_collection_and_index_are_schema_errors() -> None:
    schema = Schema(Collection("todos"))
    with pytest.raises(SchemaError):
        schema.get("notes")
    with pytest.raises(SchemaError):
        schema.get("todos").index("by_done")


def test_only_a_version_collection_takes_a_resolver() -> None:
    def keep_server(local: object, server: object, base: object) -> object:
        return server

    assert Collection("accounts", strategy="version", resolve=keep_server).resolve \
        is keep_server
    with pytest.raises(SchemaError):
        Collection("todos", strategy="merge", resolve=keep_server)
    with pytest.raises(SchemaError):
        Collection("accounts", strategy="version", resolve="not callable")  # type: ignore[arg-type]
    # The resolver is no part of the schema's identity: the server's copy equals the page's.
    assert Collection("accounts", strategy="version", resolve=keep_server) == \
        Collection("accounts", strategy="version")
