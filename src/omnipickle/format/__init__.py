"""The payload format: the header layout, signing, and the one reader and one writer.

Layers inside: ``header`` (the only code that knows byte offsets) and ``signing`` at the bottom;
``reader`` and ``writer`` on them; ``describe`` (``info``) on the reader. Nothing here unpickles.
"""
