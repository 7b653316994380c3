"""Settings for every test package."""

from __future__ import annotations

import os

from hypothesis import settings

# Property tests check what holds, not how fast: on a loaded 2-core CI machine a per-example deadline would
# fail them for the wrong reason. CI also prints hypothesis statistics' seeds on failure, so a run reproduces.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
