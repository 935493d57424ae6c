"""Measuring samples (provided; used by ``python evaluate.py``, nothing here is graded).

* :mod:`evaluation.metrics`: Fréchet distance, k-NN precision and recall, accuracy, on feature vectors.
* :mod:`evaluation.classifier`: a small CNN per dataset, trained once and cached under
  ``data/classifiers/``, whose features and predictions the metrics use.
* :mod:`evaluation.inception`: the usual Inception FID, when pytorch-fid or torchmetrics and
  their weights happen to be installed (never downloaded).
"""
