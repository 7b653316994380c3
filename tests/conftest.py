"""Settings for every test package."""

from __future__ import annotations

import os

from hypothesis import settings

# Property tests check what holds, not how fast: on a loaded 2-core CI machine a per-example deadline would
# fail them for the wrong reason. On CI a failure also prints the blob that reproduces it.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
