"""Conformance suites that any implementation can run (ours and third-party ones).

A backend runs the backend suite by subclassing it in a test module and naming itself::

    from conformance.backend import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mine"          # registered with omnipickle.register_backend
        carries_code = False      # if it writes functions by reference only, as pickle does

The suite needs only this package (``tests/conformance``) on ``sys.path``, and pytest.
"""
