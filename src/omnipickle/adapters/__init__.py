"""Adapters that let other libraries key their caches on omnipickle's content digests.

Each is one small module, imported only when used, that imports its library only when one of
its functions is called:

* :mod:`omnipickle.adapters.dask`: Dask's ``tokenize`` through one deterministic dump
  (``register()``, or :class:`~omnipickle.adapters.dask.TokenizeMixin` for one class).
* :mod:`omnipickle.adapters.joblib`: ``hash`` with ``joblib.hash``'s signature, and ``cache``,
  a ``Memory.cache`` keyed by the digest of the call.
* :mod:`omnipickle.adapters.beam`: ``DeterministicCoder``, a Beam coder whose
  ``is_deterministic()`` is true (a subclass of Beam's ``Coder`` when Beam is installed).
"""
