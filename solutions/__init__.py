"""The reference implementation: the single source of the learner files (see CONTRIBUTING.md)."""
