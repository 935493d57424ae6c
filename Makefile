# Two commands do everything on a fresh machine:
#   make demo   set up, then show the reference at work: Phase 1 pictures, ~5 min of training
#               on the CPU, then DDIM and DDPM samples and a GIF of the reverse process (runs/demo/)
#   make test   set up, then run the whole test suite on the reference (and the notebooks, with nbval)
# Others:
#   make grade [PHASE=1]   grade your own files (points per phase, one reason per failing check)
#   make stubs             maintainers: regenerate the learner files from solutions/
#   make mutants           maintainers: show which check catches each deliberate mistake
#   make eval              measure the demo model's samples (evaluate.py; after make demo)
#   make bench             every benchmark, one markdown table (about 30 min; runs/bench/report.md):
#                          U-Net and sampling speed, grading and make test wall time, time to quality
#   make setup | clean

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp is a copy of the requirements it was installed from: when
# requirements.txt changes, make sees it is newer and installs again.
STAMP := $(VENV)/.installed-requirements.txt

.PHONY: setup demo test grade stubs mutants bench eval clean

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@cp requirements.txt $(STAMP)

# The training half of the demo: the reference U-Net on the embedded digits, sized to
# finish in about 5 minutes of training on two CPU cores (--time-limit stops it, saved, if slower).
DEMO_TRAIN := --impl solutions --dataset digits --out runs/demo --overwrite \
	--steps 1200 --batch-size 64 --lr 2e-3 --warmup-steps 100 --schedule cosine --prediction v \
	--ema-decay 0.999 --channels-last --sample-every 500 --time-limit 5

# The sampling half: 64 digits with DDIM (50 steps) and the reverse process as a GIF, then 16
# with DDPM over all 1000 steps (20× more network calls: about half a minute on two cores).
demo: setup
	$(PY) -m tools.forward_demo --impl solutions --out runs/demo
	$(PY) train.py $(DEMO_TRAIN)
	$(PY) sample.py --impl solutions --checkpoint runs/demo/last.pt --num-samples 64 --gif runs/demo/trajectory.gif
	$(PY) sample.py --impl solutions --checkpoint runs/demo/last.pt --num-samples 16 --sampler ddpm

test: setup
	$(PY) -m pytest --impl solutions
	DIFFUSION_IMPL=solutions FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env notebooks/

grade: setup
	$(PY) grade.py $(if $(PHASE),--phase $(PHASE))

stubs: setup
	$(PY) -m tools.make_stubs

mutants: setup
	$(PY) -m grading.mutants

# Sample quality of the demo model: classifier accuracy, Fréchet distance against its floor,
# precision and recall (trains the classifier into data/classifiers/ on first use).
eval: setup
	$(PY) evaluate.py --impl solutions --checkpoint runs/demo/last.pt --num-samples 500

bench: setup
	$(PY) -m benchmarks.run_all --out runs/bench/report.md

clean:
	rm -rf runs results.json .pytest_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
