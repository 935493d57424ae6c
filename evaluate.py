"""Measure a model's samples (accuracy, Fréchet distance, precision, recall): ``python evaluate.py --help``.

The command is provided (provided/evaluation.py); it samples with your code through --impl.
"""

import sys

from provided.evaluation import main

if __name__ == "__main__":
    sys.exit(main())
