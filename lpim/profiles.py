"""lpim's Hypothesis settings profiles: `lpim-dev`, `lpim-ci` and `lpim-thorough`.

Select one with Hypothesis' own option, `pytest --hypothesis-profile lpim-ci`, with
`lpim check --profile lpim-ci`, or in code with `hypothesis.settings.load_profile("lpim-ci")`
(lpim registers them whenever Hypothesis is imported, through Hypothesis' own `hypothesis`
entry point; `register_profiles` does it by hand). Importing this module imports neither
Hypothesis nor torch: the pytest plugin reads `PROFILES` in every pytest run.

| profile | max_examples | derandomize | database | print_blob | for |
|---|---|---|---|---|---|
| `lpim-dev` | 10 | no | yes | no | editing: seconds |
| `lpim-ci` | 50 | yes | none | yes | CI: same run twice |
| `lpim-thorough` | 500 | no | yes | yes | a nightly run |

All three have `deadline=None` (torch's first calls on a new shape are slow, and a deadline would
report that as a flaky failure) and suppress the `too_slow` and `data_too_large` health checks
(a padded lane batch is large by design), and `function_scoped_fixture` (lpim's fixtures hold no
per-example state). Each is registered with `parent=` Hypothesis' `default` profile: a profile
registered without a parent inherits from whichever profile is loaded, and Hypothesis loads its
built-in `ci` profile by itself when it sees a CI environment variable, which would silently
change `lpim-dev` there.

The example database (where `lpim-dev` and `lpim-thorough` keep failing examples so that a
failure found once is replayed first next time) is Hypothesis' default,
`.hypothesis/examples` under the working directory. Point it elsewhere with
`LPIM_HYPOTHESIS_DATABASE=/some/dir` (read when the profiles are registered).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypothesis.database import ExampleDatabase

__all__ = ["DATABASE_ENV", "PROFILES", "register_profiles"]

PROFILES = ("lpim-dev", "lpim-ci", "lpim-thorough")
"""The names `register_profiles` registers, fastest first."""

DATABASE_ENV = "LPIM_HYPOTHESIS_DATABASE"
"""Environment variable naming a directory for the example database of the non-CI profiles."""


def _database() -> ExampleDatabase | None:
    from hypothesis.database import DirectoryBasedExampleDatabase

    directory = os.environ.get(DATABASE_ENV)
    return DirectoryBasedExampleDatabase(directory) if directory else None


def register_profiles() -> None:
    """Register `lpim-dev`, `lpim-ci` and `lpim-thorough` with Hypothesis (idempotent).

    Registering does not load a profile: pass `--hypothesis-profile NAME` to pytest or call
    `hypothesis.settings.load_profile(NAME)`. Installing lpim registers them whenever Hypothesis
    is imported (a `hypothesis` entry point names this function), so a conftest or a script
    can load one without calling this.
    """
    from hypothesis import HealthCheck, settings

    default = settings.get_profile("default")
    database = _database()
    common: dict[str, object] = {
        "deadline": None,
        "suppress_health_check": [
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    }
    if database is not None:
        common["database"] = database
    settings.register_profile("lpim-dev", parent=default, max_examples=10, **common)
    settings.register_profile(
        "lpim-ci",
        parent=default,
        max_examples=50,
        derandomize=True,
        print_blob=True,
        **{**common, "database": None},
    )
    settings.register_profile(
        "lpim-thorough",
        parent=default,
        max_examples=500,
        print_blob=True,
        **common,
    )
