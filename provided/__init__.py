"""Provided code: nothing here is an exercise, and nothing here is generated.

Both your files at the top level and the reference in ``solutions/`` import it, and
it never imports either of them when it loads (they are reached through
``utils.import_impl`` at run time), so ``--impl solutions`` works whatever state
your files are in.

* :mod:`provided.training`: the training loop and the ``python train.py`` command.
* :mod:`provided.sampling`: the ``python sample.py`` command (grids, GIFs, classes, guidance, inpainting).
* :mod:`provided.evaluation`: the ``python evaluate.py`` command; :mod:`provided.metrics`,
  :mod:`provided.classifier` and :mod:`provided.inception` measure samples.
* :mod:`provided.image_data`: the datasets (embedded digits, torchvision's, image folders).
* :mod:`provided.phases`: which phases of your code are complete (the ``auto`` choice of ``--impl``).
* :mod:`provided.choices`: the names and defaults the commands accept (schedules, samplers…).
* :mod:`provided.validate`: the input checks every exercise function starts with.
* :mod:`provided.conditioning`: Phase 5 glue the commands share (guidance inputs, image conditions).
* :mod:`provided.cli`: argument types and their bounds, and the one-line errors of the commands.
* :mod:`provided.files`: atomic writes (and the checks that an output can be written), JSON,
  checkpoints read safely, a run folder's lock, and image grids on disk.
"""
