"""The autograder: the checker, the pytest plugin, the mistake catalogue, mutants and reports."""
