"""The one build step pyproject.toml cannot say: the optional C fast path of ``loads`` and
``dumps``.

``optional=True``: where it cannot be compiled (no C compiler, no Python headers), setuptools
warns and installs the package without it; ``omnipickle`` then runs its pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("omnipickle._speedups", ["src/omnipickle/_speedups.c"], optional=True),
    ]
)
