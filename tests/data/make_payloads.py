"""Write the payloads that tests/test_compat_data.py loads, for the installed release.

Run once per release, with that release installed:

    python tests/data/make_payloads.py

It writes tests/data/v<version>/ with one file per case and a MANIFEST.json naming, for each
file, how to load it and what it must give back. Committed payloads are never rewritten: the
format is a promise that every later release loads them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import omnipickle

KEY = b"omnipickle-compat-test-key-0001"
DATA = {
    "ints": [0, 1, -1, 2**70],
    "text": "héllo ✓",
    "bytes": b"\x00\xff" * 4,
    "nested": {"tuple": (1, 2.5, None), "set": [3, 1, 2], "flag": True},
}


def add_one(x: int) -> int:
    return x + 1


def main() -> None:
    folder = Path(__file__).parent / f"v{omnipickle.__version__}"
    folder.mkdir(exist_ok=True)
    manifest: dict[str, dict[str, object]] = {}

    manifest_path = folder / "MANIFEST.json"
    if manifest_path.exists():
        manifest.update(json.loads(manifest_path.read_text()))

    def write(name: str, payload: bytes, expect: str, **load: object) -> None:
        if name in manifest:
            return  # committed payloads are never rewritten
        (folder / name).write_bytes(payload)
        manifest[name] = {"expect": expect, "load": load}

    def dump_file(name: str, obj: object, expect: str, **options: object) -> None:
        if name in manifest:
            return
        omnipickle.dump(obj, folder / name, **options)  # type: ignore[arg-type]
        manifest[name] = {"expect": expect, "load": {}}

    write("plain.omni", omnipickle.dumps(DATA), "data")
    for protocol in range(omnipickle.HIGHEST_PROTOCOL + 1):
        write(f"protocol{protocol}.omni", omnipickle.dumps(DATA, protocol), "data")
    for codec in ("gzip", "bz2", "lzma", "zstd", "lz4"):
        write(f"{codec}.omni", omnipickle.dumps(DATA, compression=codec), "data")
    write("signed.omni", omnipickle.dumps(DATA, key=KEY), "data", key=KEY.decode())
    write("backend-dill.omni", omnipickle.dumps(DATA, backend="dill"), "data")
    write("backend-cloudpickle.omni", omnipickle.dumps(DATA, backend="cloudpickle"), "data")
    # Code by value loads only under the Python minor version that wrote it.
    write(
        "lambda.omni",
        omnipickle.dumps(lambda x: x * 7),
        f"function-times-7-on-python-{sys.version_info[0]}.{sys.version_info[1]}",
    )
    # A closure, as omnipickle._rebuild.function rebuilds functions by value (its state setter
    # fills the cell).
    factor = 7
    write(
        "closure.omni",
        omnipickle.dumps(lambda x: x * factor),
        f"function-times-7-on-python-{sys.version_info[0]}.{sys.version_info[1]}",
    )
    # Written by dump() to a file: large arrays as sections; a large stream streamed.
    import numpy as np

    dump_file("sections.omni", {"a": np.arange(20_000, dtype=np.float64)}, "arange")
    dump_file(
        "streamed-zstd.omni",
        [{"i": i} for i in range(150_000)],
        "rows",
        compression="zstd",
    )
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(manifest)} payloads to {folder}")


if __name__ == "__main__":
    main()
