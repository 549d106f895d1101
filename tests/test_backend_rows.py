"""The backend table: one row per backend, and the envelope's questions answered from it."""

from __future__ import annotations

import importlib
import pickle
import sys
from collections.abc import Iterator

import pytest

import omnipickle
from omnipickle.backends import BUILTIN_ROWS, BackendRow
from omnipickle.backends.rows import builtin_row

# The subpackage itself (omnipickle.backends, the attribute, is the backends() function).
table = importlib.import_module("omnipickle.backends")


@pytest.fixture
def restore_table(restore_registries: None) -> Iterator[None]:
    """The registry fixture, plus the rows (a row counts only while its name is registered)."""
    saved = dict(table._ROWS)
    try:
        yield
    finally:
        table._ROWS.clear()
        table._ROWS.update(saved)


def test_wire_numbers_never_change() -> None:
    """Payloads written by every release name their backends by these numbers."""
    wire = {row.name: (row.bit, row.loader_id) for row in BUILTIN_ROWS}
    assert wire == {
        "auto": (None, None),
        "pickle": (1, 0),
        "cloudpickle": (2, 1),
        "dill": (4, 2),
    }


def test_old_side_tables_are_derived_from_the_rows() -> None:
    assert table.BUILTIN_BITS == {"pickle": 1, "cloudpickle": 2, "dill": 4}
    assert table.LOADER_IDS == {"pickle": 0, "cloudpickle": 1, "dill": 2}
    assert table.PACKAGES == {"cloudpickle": "cloudpickle", "dill": "dill"}


@pytest.mark.parametrize("row", BUILTIN_ROWS, ids=lambda row: row.name)
def test_each_builtin_backend_takes_its_facts_from_its_row(row: BackendRow) -> None:
    backend = table.get_backend(row.name)
    facts = (backend.name, backend.requires, backend.streams, backend.supports_drop)
    assert facts == (row.name, row.package, row.streams, row.supports_drop)
    assert table.row_for(row.name) == row


def test_bits_for_names_the_backends_without_a_bit() -> None:
    assert table.bits_for(["pickle", "dill"]) == (5, [])
    assert table.bits_for(["zeta", "pickle", "alpha"]) == (1, ["alpha", "zeta"])
    assert table.bits_for([]) == (0, [])


def test_names_for_bits_in_bit_order() -> None:
    assert table.names_for_bits(0) == []
    assert table.names_for_bits(7) == ["pickle", "cloudpickle", "dill"]
    assert table.names_for_bits(4) == ["dill"]


@pytest.mark.parametrize("bits", [8, 0x80, 0x81])
def test_an_unknown_bit_is_an_incompatible_payload(bits: int) -> None:
    with pytest.raises(omnipickle.IncompatiblePayloadError, match="does not know"):
        table.names_for_bits(bits)


def test_loader_ids_both_ways() -> None:
    for row in BUILTIN_ROWS:
        assert table.loader_id(row.name) == row.loader_id
        if row.loader_id is not None:
            assert table.loader_name(row.loader_id) == row.name
    assert table.loader_id("not-a-backend") is None
    with pytest.raises(omnipickle.IncompatiblePayloadError, match="loader id 9"):
        table.loader_name(9)


def test_package_for() -> None:
    assert table.package_for("dill") == "dill"
    assert table.package_for("cloudpickle") == "cloudpickle"
    assert table.package_for("pickle") is None
    assert table.package_for("auto") is None
    assert table.package_for("not-a-backend") is None


def test_check_installed_accepts_what_is_there() -> None:
    table.check_installed(["pickle", "cloudpickle", "dill", "auto"])


@pytest.mark.usefixtures("restore_table")
def test_check_installed_says_what_to_pip_install() -> None:
    row = BackendRow("ghost", "ghost_mod.x:B", package="ghost-dist-not-there", bit=8, loader_id=7)
    table.register_row(row)
    with pytest.raises(omnipickle.BackendNotInstalledError, match="pip install ghost-dist") as info:
        table.check_installed(["pickle", "ghost"])
    assert isinstance(info.value, ImportError)
    with pytest.raises(omnipickle.UnknownBackendError):
        table.check_installed(["never-registered"])


@pytest.mark.usefixtures("restore_table")
@pytest.mark.parametrize(("bit", "loader"), [(2, None), (None, 1), (4, 2)])
def test_registering_a_taken_bit_or_loader_id_raises(bit: int | None, loader: int | None) -> None:
    row = BackendRow("clash", "x.y:Z", bit=bit, loader_id=loader)
    with pytest.raises(ValueError, match="already the"):
        table.register_row(row)
    assert "clash" not in omnipickle.backends()


@pytest.mark.usefixtures("restore_table")
@pytest.mark.parametrize("bit", [0, 3, 256, -1])
def test_an_envelope_bit_is_one_bit_of_a_byte(bit: int) -> None:
    with pytest.raises(ValueError, match="envelope bit"):
        table.register_row(BackendRow("odd", "x.y:Z", bit=bit))


@pytest.mark.usefixtures("restore_table")
def test_a_registered_row_answers_the_envelope() -> None:
    table.register_row(BackendRow("extra", "x.y:Z", bit=0x10, loader_id=9))
    assert table.names_for_bits(0x11) == ["pickle", "extra"]
    assert table.loader_name(9) == "extra"
    assert table.bits_for(["extra"]) == (0x10, [])


@pytest.mark.parametrize("name", ["auto", "pickle"])
def test_auto_and_pickle_cannot_be_unregistered(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be unregistered"):
        table.unregister_backend(name)
    assert name in omnipickle.backends()


@pytest.mark.usefixtures("restore_table")
def test_an_unregistered_backend_is_gone_until_its_row_comes_back() -> None:
    table.unregister_backend("dill")
    assert "dill" not in omnipickle.backends()
    with pytest.raises(omnipickle.IncompatiblePayloadError):
        table.names_for_bits(4)
    with pytest.raises(omnipickle.UnknownBackendError):
        omnipickle.dumps(1, backend="dill")
    with pytest.raises(omnipickle.UnknownBackendError):
        table.unregister_backend("dill")
    table.register_row(builtin_row("dill"))
    assert omnipickle.loads(omnipickle.dumps([1], backend="dill")) == [1]


@pytest.mark.usefixtures("restore_table")
def test_replacing_a_builtin_keeps_its_wire_numbers() -> None:
    table.register_backend("dill", table.get_backend("pickle"), replace=True)
    assert (table.row_for("dill").bit, table.loader_id("dill")) == (4, 2)
    assert table.row_for("dill").package is None  # the replacement's own fact


@pytest.mark.usefixtures("restore_table")
def test_a_third_party_backend_gets_a_row_without_wire_numbers() -> None:
    table.register_backend("mine", table.get_backend("pickle"))
    row = table.row_for("mine")
    assert (row.bit, row.loader_id, row.streams) == (None, None, True)
    assert table.bits_for(["mine"]) == (0, ["mine"])


@pytest.mark.parametrize("name", ["cloudpickle", "dill"])
def test_global_prefixes_cover_what_the_backends_payloads_name(name: str) -> None:
    class Local:
        def method(self) -> int:
            return 1

    def local(x: int) -> int:
        return x

    raw = omnipickle.dumps([lambda: 1, Local, local.__code__, local], backend=name, raw=True)
    prefixes = table.global_prefixes(name)
    modules = {use.module for use in omnipickle.scan(raw).globals}
    foreign = {
        m
        for m in modules
        if m.split(".")[0] not in sys.stdlib_module_names
        and m not in ("__builtin__", "__main__", __name__)
        and not m.startswith(prefixes)
    }
    assert foreign == set()
    assert any(m.startswith(prefixes) for m in modules)
    assert pickle.loads(raw)[0]() == 1
