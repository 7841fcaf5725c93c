"""A pytest plugin that tools/mutation.py loads into every test run of a mutant: Hypothesis
reports the first failing example without shrinking it.

A mutant needs only "some test fails"; shrinking the failing example to a minimal one runs the
test again tens or hundreds of times (each a file written and parsed), which made a killed
mutant of the readers cost more than a surviving one. Examples are generated as the suite's
profile says (the same number, derandomized), so what kills a mutant is unchanged.
"""

from __future__ import annotations


def pytest_configure(config) -> None:
    """After tests/conftest.py has loaded its profile: the same, without the shrink phase."""
    from hypothesis import Phase, settings

    settings.register_profile("mutation", parent=settings.default,
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile("mutation")
