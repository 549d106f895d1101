"""Conformance suites that any implementation can run (ours and third-party ones).

A backend runs the backend suite by subclassing it in a test module and naming itself::

    from conformance.backend import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mine"          # registered with omnipickle.register_backend
        carries_code = False      # if it writes functions by reference only, as pickle does

A codec runs the codec suite the same way; if it is not registered when the tests are
collected, an autouse fixture registers it for each test (``restore_registries`` is the fixture
in ``tests/conftest.py`` that puts the registries back afterwards)::

    import pytest
    from conformance.codec import CodecConformance
    from omnipickle.codecs import register_codec

    class TestMyCodec(CodecConformance):
        codec = "mine"            # the codec's ``name``, registered with register_codec

        @pytest.fixture(autouse=True)
        def _registered(self, restore_registries):
            register_codec("mine", MyCodec())

The suites need only this package (``tests/conformance``) on ``sys.path``, and pytest (and
numpy, for the codec suite's one test of arrays stored as sections; it is skipped without it).
"""
