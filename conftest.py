"""Loads the exercise plugin (options --impl, --submission, --check-timeout; fixtures impl, ref)."""

pytest_plugins = ["grading.plugin"]
