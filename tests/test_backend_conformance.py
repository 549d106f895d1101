"""Every registered backend runs the conformance suite (tests/conformance/backend.py)."""

from __future__ import annotations

import omnipickle
from conformance.backend import BackendConformance

# What a backend cannot do by design, the suite checks is refused instead.
_WITHOUT_CODE = frozenset({"pickle"})


def _suite(name: str) -> type[BackendConformance]:
    attrs = {"backend": name, "carries_code": name not in _WITHOUT_CODE, "__module__": __name__}
    return type(f"Test{name.title()}Backend", (BackendConformance,), attrs)


for _name in omnipickle.backends():
    globals()[f"Test{_name.title()}Backend"] = _suite(_name)
del _name


def test_every_registered_backend_runs_the_suite() -> None:
    suites = {
        cls.backend
        for cls in globals().values()
        if isinstance(cls, type)
        and issubclass(cls, BackendConformance)
        and cls is not BackendConformance
    }
    assert suites == set(omnipickle.backends())
