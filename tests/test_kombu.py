"""The kombu serializer ``omnipickle`` (application/x-omnipickle), and Celery with it: a real
``celery worker`` on kombu's filesystem transport and the file result backend."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import omnipickle

kombu_serialization = pytest.importorskip("kombu.serialization")
pytest.importorskip("celery")

from kombu.exceptions import DecodeError, EncodeError  # noqa: E402

import omnipickle.kombu  # noqa: E402
from celery_workers import (  # noqa: E402
    KEY,
    OTHER,
    ROOT,
    docs_example,
    entry_point_site,
    run_client,
    running_worker,
    worker_env,
)
from conftest import check_python  # noqa: E402


@pytest.fixture
def kombu_registry() -> Iterator[Any]:
    """kombu's global registry, with the ``omnipickle`` registration put back afterwards."""
    registry = kombu_serialization.registry
    saved = (
        registry._encoders.get("omnipickle"),
        registry._decoders.get(omnipickle.kombu.CONTENT_TYPE),
    )
    try:
        yield registry
    finally:
        encoder, decoder = saved
        if encoder is not None:
            registry.register(
                "omnipickle",
                encoder.encoder,
                decoder,
                encoder.content_type,
                encoder.content_encoding,
            )
        elif "omnipickle" in registry.name_to_type:
            registry.unregister("omnipickle")


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(omnipickle.kombu.KEY_ENV, raising=False)


def _cause(caught: pytest.ExceptionInfo[Exception]) -> BaseException:
    """What kombu wrapped: its ``DecodeError``/``EncodeError`` carries the original as its
    argument (kombu re-raises without chaining)."""
    (original,) = caught.value.args
    assert isinstance(original, BaseException)
    return original


def _round_trip(obj: Any, *, accept: tuple[str, ...] = ("application/x-omnipickle",)) -> Any:
    content_type, encoding, body = kombu_serialization.dumps(obj, serializer="omnipickle")
    assert (content_type, encoding) == ("application/x-omnipickle", "binary")
    return kombu_serialization.loads(body, content_type, encoding, accept=set(accept))


def test_register_kombu_carries_a_closure(kombu_registry: Any, no_env_key: None) -> None:
    omnipickle.kombu.register_kombu()
    base = 3
    assert _round_trip(lambda x: x * base)(14) == 42


def test_messages_are_omnipickle_payloads_unsigned_without_a_key(
    kombu_registry: Any, no_env_key: None
) -> None:
    omnipickle.kombu.register_kombu()
    _, _, body = kombu_serialization.dumps({"a": [1]}, serializer="omnipickle")
    assert omnipickle.loads(body) == {"a": [1]}
    assert omnipickle.info(body).signed is False


def test_an_explicit_key_signs_and_refuses_unsigned_messages(
    kombu_registry: Any, no_env_key: None
) -> None:
    omnipickle.kombu.register_kombu(key=KEY)
    _, _, body = kombu_serialization.dumps([1, 2], serializer="omnipickle")
    assert omnipickle.info(body).signed is True
    omnipickle.loads(body, key=KEY)
    with pytest.raises(DecodeError) as caught:
        kombu_serialization.loads(omnipickle.dumps([1, 2]), omnipickle.kombu.CONTENT_TYPE, "binary")
    assert isinstance(_cause(caught), omnipickle.SignatureError)


def test_the_environment_key_is_read_at_every_message(
    kombu_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    omnipickle.kombu.register_kombu()
    monkeypatch.setenv("OMNIPICKLE_KEY", KEY.decode())
    _, _, body = kombu_serialization.dumps("x", serializer="omnipickle")
    assert omnipickle.loads(body, key=KEY) == "x"
    monkeypatch.setenv("OMNIPICKLE_KEY", OTHER.decode())
    with pytest.raises(DecodeError) as caught:
        kombu_serialization.loads(body, omnipickle.kombu.CONTENT_TYPE, "binary")
    assert isinstance(_cause(caught), omnipickle.SignatureError)


def test_an_explicit_key_overrides_the_environment(
    kombu_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNIPICKLE_KEY", OTHER.decode())
    omnipickle.kombu.register_kombu(key=KEY)
    _, _, body = kombu_serialization.dumps("x", serializer="omnipickle")
    assert omnipickle.loads(body, key=KEY) == "x"


def test_a_short_environment_key_is_a_clear_error(
    kombu_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    omnipickle.kombu.register_kombu()
    monkeypatch.setenv("OMNIPICKLE_KEY", "short")
    with pytest.raises(EncodeError, match="at least 16 bytes"):
        kombu_serialization.dumps("x", serializer="omnipickle")


def test_restricted_decoding_refuses_unsigned_code_and_accepts_signed_code(
    kombu_registry: Any, no_env_key: None
) -> None:
    omnipickle.kombu.register_kombu(key=KEY, restricted=True)
    assert _round_trip(lambda: 7)() == 7  # signed with KEY: its code is trusted
    omnipickle.kombu.register_kombu(restricted=True)
    with pytest.raises(DecodeError) as caught:
        _round_trip(lambda: 7)
    assert isinstance(_cause(caught), omnipickle.UnsafePayloadError)
    assert _round_trip(({"k": (1, "s")}, [2.5])) == ({"k": (1, "s")}, [2.5])


def test_restricted_decoding_needs_the_exception_class_allowed(
    kombu_registry: Any, no_env_key: None
) -> None:
    """Each refusal names the global to allow; once they are, the exception loads. (What they
    are depends on the process: distributed's import makes tblib pickle every exception.)"""
    allowed: list[str] = []
    for _ in range(4):
        omnipickle.kombu.register_kombu(restricted=True, allow=allowed or None)
        try:
            loaded = _round_trip(ZeroDivisionError("boom"))
            break
        except DecodeError as exc:
            cause = exc.args[0]
            assert isinstance(cause, omnipickle.UnsafePayloadError)
            allowed.append(str(cause).split("refused the global ", 1)[1].split(":", 1)[0])
    else:
        raise AssertionError(f"still refused after allowing {allowed}")
    assert allowed  # the first attempt was refused
    assert type(loaded) is ZeroDivisionError and loaded.args == ("boom",)


def test_compression_applies_to_every_message(kombu_registry: Any, no_env_key: None) -> None:
    omnipickle.kombu.register_kombu(compression="zstd")
    _, _, body = kombu_serialization.dumps(list(range(1000)), serializer="omnipickle")
    assert omnipickle.info(body).codec == "zstd"
    assert _round_trip(list(range(1000))) == list(range(1000))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"key": b"short"}, ValueError),
        ({"allow": ("os.*",)}, ValueError),
        ({"compression": "nope"}, omnipickle.UnknownCodecError),
    ],
)
def test_bad_options_raise_at_registration(
    kombu_registry: Any, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        omnipickle.kombu.register_kombu(**kwargs)


def test_the_content_type_must_be_accepted(kombu_registry: Any, no_env_key: None) -> None:
    omnipickle.kombu.register_kombu()
    with pytest.raises(kombu_serialization.ContentDisallowed):
        _round_trip(1, accept=("application/json",))


# --- the entry point -------------------------------------------------------------------------


def test_pyproject_declares_the_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["kombu.serializers"]["omnipickle"]
    assert target == "omnipickle.kombu:ENTRY_POINT"
    encoder, decoder, content_type, encoding = omnipickle.kombu.ENTRY_POINT
    assert (content_type, encoding) == ("application/x-omnipickle", "binary")
    assert decoder(encoder(lambda: 5))() == 5


def test_importing_kombu_registers_omnipickle_through_the_entry_point(tmp_path: Path) -> None:
    site = entry_point_site(tmp_path)
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r})\n"
        "from kombu import serialization as s\n"
        "print(s.registry.name_to_type['omnipickle'])\n"
        "ctype, enc, body = s.dumps(lambda: 9, serializer='omnipickle')\n"
        "print(s.loads(body, ctype, enc, accept={ctype})())\n"
    )
    assert check_python(code=code).split() == ["application/x-omnipickle", "9"]


def test_importing_omnipickle_does_not_import_kombu() -> None:
    out = check_python(code="import sys, omnipickle\nprint('kombu' in sys.modules)")
    assert out.strip() == "False"


# --- a real Celery worker --------------------------------------------------------------------


@pytest.fixture
def celery_dirs(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """tmp_path with the docs' tasks.py, its broker and results folders, and the environment
    of a worker and a caller there."""
    tasks, _, _ = docs_example()
    (tmp_path / "tasks.py").write_text(tasks)
    for name in ("broker", "results"):
        (tmp_path / name).mkdir()
    env = worker_env(
        tmp_path, BROKER_DIR=str(tmp_path / "broker"), RESULT_DIR=str(tmp_path / "results")
    )
    return tmp_path, env


@pytest.mark.parametrize("key", [None, KEY.decode()], ids=["unsigned", "signed-from-env"])
def test_the_docs_example_runs_on_a_real_celery_worker(
    celery_dirs: tuple[Path, dict[str, str]], key: str | None
) -> None:
    """A closure from the caller's ``__main__`` runs in the worker; a lambda comes back."""
    tmp_path, env = celery_dirs
    if key is not None:
        env["OMNIPICKLE_KEY"] = key
    _, client, output = docs_example()
    with running_worker(tmp_path, env) as log:
        done = run_client(tmp_path, env, client)
    assert done.returncode == 0, done.stderr + log.read_text()
    assert done.stdout == output


def test_a_worker_with_a_key_refuses_a_message_signed_with_another(
    celery_dirs: tuple[Path, dict[str, str]],
) -> None:
    tmp_path, env = celery_dirs
    with running_worker(tmp_path, {**env, "OMNIPICKLE_KEY": KEY.decode()}) as log:
        code = (
            "import celery.exceptions\nfrom tasks import call\n"
            "try:\n    call.delay(lambda: 1).get(timeout=3)\n"
            "except celery.exceptions.TimeoutError:\n    print('no result')\n"
        )
        done = run_client(tmp_path, {**env, "OMNIPICKLE_KEY": OTHER.decode()}, code)
    text = log.read_text()
    assert done.stdout == "no result\n", done.stderr
    assert "SignatureError" in text or "signature" in text.lower(), text
