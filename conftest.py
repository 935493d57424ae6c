"""Loads the exercise plugin (options --impl, --submission, --grade-report; fixtures impl, ref)."""

pytest_plugins = ["grading.plugin"]
