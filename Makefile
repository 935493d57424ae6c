# Two commands do everything on a fresh machine:
#   make demo   set up, then show the reference at work: Phase 1 pictures, ~5 min of training
#               on the CPU, then DDIM and DDPM samples and a GIF of the reverse process (runs/demo/),
#               then ~2 min of class-conditional training and a guidance grid (runs/demo-cfg/), then
#               Phase 6: an autoencoder (runs/demo-ae/) and ~1 min of latent diffusion (runs/demo-latent/),
#               then Phase 7: ~3 min of text-to-image on those latents and prompted samples (runs/demo-text/)
#   make test   set up, then run the whole test suite on the reference (and the notebooks, with nbval)
# Others:
#   make grade [PHASE=1]   grade your own files (points per phase, one reason per failing check)
#   make stubs             maintainers: regenerate the learner files from solutions/
#   make mutants           maintainers: show which check catches each deliberate mistake
#   make student           instructors: the student release in dist/student/ (no solutions/; its checks
#                          replay the reference's recorded answers; README, "For instructors")
#   make autograder        instructors: Gradescope's autograder zip (dist/autograder.zip; README, "For
#                          instructors"); EXTRA_CHECKS=path adds your own hidden checks
#   make eval              measure the demo models' samples, with a guidance sweep and the text model's prompt
#                          adherence (evaluate.py; after make demo)
#   make bench             every benchmark, one markdown table (about an hour; runs/bench/report.md):
#                          U-Net and sampling speed, grading and make test wall time, time to quality,
#                          latent diffusion (Phase 6), text-to-image (Phase 7)
#   make setup | clean

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp is a copy of the requirements it was installed from: when
# requirements.txt changes, make sees it is newer and installs again.
STAMP := $(VENV)/.installed-requirements.txt

.PHONY: setup demo test grade stubs mutants student autograder bench eval clean

# The code the demo and the evaluation run: the reference, or in a student release (which has no
# solutions/) your own files, phase by phase as far as they are finished.
REFERENCE := $(if $(wildcard solutions/__init__.py),solutions,auto)

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@cp requirements.txt $(STAMP)

# The training half of the demo: the reference U-Net on the embedded digits, sized to
# finish in about 5 minutes of training on two CPU cores (--time-limit stops it, saved, if slower).
DEMO_TRAIN := --impl $(REFERENCE) --dataset digits --out runs/demo --overwrite \
	--steps 1200 --batch-size 64 --lr 2e-3 --warmup-steps 100 --schedule cosine --prediction v \
	--ema-decay 0.999 --channels-last --sample-every 500 --time-limit 5

# Phase 5 in the demo: the same U-Net, class-conditional, for about 2 minutes (600 steps). Class-
# conditional samples at w = 3 pass 90% classifier accuracy after about one minute (make bench).
DEMO_CFG_TRAIN := --impl $(REFERENCE) --dataset digits --class-conditional --out runs/demo-cfg --overwrite \
	--steps 600 --batch-size 64 --lr 2e-3 --warmup-steps 100 --schedule cosine --prediction v \
	--ema-decay 0.999 --channels-last --sample-every 0 --time-limit 3

# Phase 6 in the demo: an autoencoder (32×32 → 4×8×8 latents) for about a minute, then the same U-Net,
# class-conditional, on its frozen latents for about a minute (make bench trains each longer).
DEMO_AE_TRAIN := --impl $(REFERENCE) --dataset digits --train-autoencoder --out runs/demo-ae --overwrite \
	--steps 150 --batch-size 64 --lr 2e-3 --warmup-steps 20 --ema-decay 0.99 --sample-every 0 --time-limit 1.5
DEMO_LATENT_TRAIN := --impl $(REFERENCE) --dataset digits --autoencoder runs/demo-ae/last.pt --class-conditional \
	--out runs/demo-latent --overwrite --steps 500 --batch-size 64 --lr 2e-3 --warmup-steps 100 --schedule cosine \
	--prediction v --ema-decay 0.999 --channels-last --sample-every 0 --time-limit 1.5

# Phase 7 in the demo: a text-conditioned U-Net on the latents of the demo's autoencoder (the small Stable
# Diffusion) for about three minutes; its captions are the digits' true captions (provided/captions.py).
DEMO_TEXT_TRAIN := --impl $(REFERENCE) --dataset digits --autoencoder runs/demo-ae/last.pt --captions --attention-levels 1,2 \
	--out runs/demo-text --overwrite --steps 800 --batch-size 64 --lr 2e-3 --warmup-steps 100 --schedule cosine \
	--prediction v --ema-decay 0.999 --channels-last --sample-every 0 --time-limit 3
DEMO_PROMPTS := --prompt "a bold seven" --prompt "a thin 2" --prompt "a 4 leaning right" --prompt "the digit three"

# The sampling half: 64 digits with DDIM (50 steps) and the reverse process as a GIF, then 16
# with DDPM over all 1000 steps (20× more network calls: about half a minute on two cores), then
# one row per class of the class-conditional model at guidance scales w = 0, 1, 3 and 5.
demo: setup
	$(PY) -m tools.forward_demo --impl $(REFERENCE) --out runs/demo
	$(PY) train.py $(DEMO_TRAIN)
	$(PY) sample.py --impl $(REFERENCE) --checkpoint runs/demo/last.pt --num-samples 64 --gif runs/demo/trajectory.gif
	$(PY) sample.py --impl $(REFERENCE) --checkpoint runs/demo/last.pt --num-samples 16 --sampler ddpm
	$(PY) train.py $(DEMO_CFG_TRAIN)
	$(PY) sample.py --impl $(REFERENCE) --checkpoint runs/demo-cfg/last.pt --guidance-grid 0,1,3,5 \
		--out runs/demo-cfg/guidance_grid.png
	$(PY) train.py $(DEMO_AE_TRAIN)
	$(PY) train.py $(DEMO_LATENT_TRAIN)
	$(PY) sample.py --impl $(REFERENCE) --checkpoint runs/demo-latent/last.pt --guidance-grid 0,1,3,5 \
		--out runs/demo-latent/guidance_grid.png
	$(PY) train.py $(DEMO_TEXT_TRAIN)
	$(PY) sample.py --impl $(REFERENCE) --checkpoint runs/demo-text/last.pt $(DEMO_PROMPTS) --guidance-grid 0,1,3,5 \
		--out runs/demo-text/guidance_grid.png

# The repository: every test on the reference, and the notebooks. A student release: the checks on
# your files (its tests are the checks).
test: setup
ifeq ($(REFERENCE),solutions)
	$(PY) -m pytest --impl solutions
	DIFFUSION_IMPL=solutions FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env notebooks/
else
	$(PY) -m pytest --impl learner
endif

comma := ,
grade: setup  # PHASE=1, PHASE="2 5" or PHASE=2,5 (as each learner file's header writes it)
	$(PY) grade.py $(if $(PHASE),--phase $(subst $(comma), ,$(PHASE)))

stubs: setup
	$(PY) -m tools.make_stubs

mutants: setup
	$(PY) -m grading.mutants

student: setup
	$(PY) -m tools.release student

autograder: setup
	$(PY) -m tools.release autograder $(if $(EXTRA_CHECKS),--extra-checks $(EXTRA_CHECKS))

# Sample quality of the demo's models: Fréchet distance against its floor, precision and recall;
# for the class-conditional one also classifier accuracy, swept over the guidance scale w (a table
# and a plot in runs/demo-cfg/eval/). Trains the classifier into data/classifiers/ on first use.
eval: setup
	$(PY) evaluate.py --impl $(REFERENCE) --checkpoint runs/demo/last.pt --num-samples 500
	$(PY) evaluate.py --impl $(REFERENCE) --checkpoint runs/demo-cfg/last.pt --num-samples 500 --sweep 0,1,3,5
	$(PY) evaluate.py --impl $(REFERENCE) --checkpoint runs/demo-ae/last.pt --num-samples 500
	$(PY) evaluate.py --impl $(REFERENCE) --checkpoint runs/demo-latent/last.pt --num-samples 500
	$(PY) evaluate.py --impl $(REFERENCE) --checkpoint runs/demo-text/last.pt --per-pair 4

bench: setup
	$(PY) -m tools.benchmarks.run_all --out runs/bench/report.md

clean:
	rm -rf runs dist results.json .pytest_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
