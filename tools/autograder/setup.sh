#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu; the zip is
# unpacked in /autograder/source). A CPU-only torch: the autograder has no GPU.
set -euo pipefail
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --upgrade pip
/autograder/venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch torchvision
/autograder/venv/bin/pip install -r /autograder/source/requirements-autograder.txt
# Grading a reference copy once checks the image before any student is graded.
/autograder/venv/bin/python /autograder/source/grade.py --impl solutions --phase 1 > /dev/null
