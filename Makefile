# The README's two commands: `make demo` and `make test`.
.PHONY: setup demo test test-all lint bench generator-checkpoint dso-checkpoint

VENV ?= .venv
PY := $(VENV)/bin/python

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/simkit generate --n 16 --out out/generate

test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

# The shipped generator's recipe (about 3.5 hours on 2 CPU cores; both runs resume):
# 12,000 steps from scratch, then 4,000 fine-tuning steps weighted to thin parts.
# The result, runs/shapes-base-thin/pipeline, is what assets/checkpoints/shapes-base holds.
generator-checkpoint: setup
	$(VENV)/bin/simkit train-generator --config assets/configs/generator-16.json
	$(VENV)/bin/simkit train-generator --config assets/configs/generator-16-thin.json

# The shipped aligned generator's recipe (about 3 hours on 2 CPU cores; each step
# resumes): two simulation-feedback runs from shapes-base, three online rounds of KTO
# each, one rewarded for standing and one for standing *and* being recognised as the
# family asked for; their average (a model soup); one more round from the soup, rewarded
# for standing and being recognised, with the soup as reference and anchor; then its
# evaluation. runs/shapes-dso/pipeline is what assets/checkpoints/shapes-dso holds (see
# its README).
DSO_FT := --objective kto --fragments fail \
    --samples-per-condition 256 --steps 1000 --batch-size 32 --lr 1e-4 --full \
    --p-mean -1.2 --sigma-uniform 0.2 --thin-weight 4 --class-dropout 0.1 \
    --anchor 1 --sigma-split 0.5 --replay 100 --balance-labels --workers 2 \
    --save-dtype float16
dso-checkpoint: setup
	$(VENV)/bin/simkit align --checkpoint shapes-base --rounds 3 $(DSO_FT) --out runs/shapes-dso-stand
	$(VENV)/bin/simkit align --checkpoint shapes-base --rounds 3 $(DSO_FT) \
	    --reward stability+family --out runs/shapes-dso-family
	$(VENV)/bin/simkit soup runs/shapes-dso-stand/pipeline runs/shapes-dso-family/pipeline \
	    --save-dtype float16 --out runs/shapes-dso-soup/pipeline
	$(VENV)/bin/simkit align --checkpoint runs/shapes-dso-soup/pipeline --rounds 1 $(DSO_FT) \
	    --reward stability+family --out runs/shapes-dso
	$(VENV)/bin/simkit evaluate --checkpoint runs/shapes-dso/pipeline --baseline shapes-base \
	    --n 288 --workers 2 --out runs/shapes-dso-eval

lint: setup
	$(VENV)/bin/ruff check simkit solvers generators tests scripts

bench: setup
	$(PY) scripts/bench/geometry.py
	$(PY) scripts/bench/stability.py --n 200 --workers 2
	$(PY) scripts/bench/stability_agreement.py
	$(PY) scripts/bench/samplers.py
	$(PY) scripts/bench/generator.py
	$(PY) scripts/bench/thin_parts.py --json scripts/bench/results/thin_parts_latest.json
	$(PY) scripts/bench/dso.py
	$(PY) scripts/bench/pde_solvers.py
	$(PY) scripts/bench/least_squares.py
	$(VENV)/bin/simkit pde generate --pde diffusion-sorption --n 48 --resolution 64 --times 26 --out runs/bench-data/ds-train.h5
	$(VENV)/bin/simkit pde generate --pde diffusion-sorption --n 16 --resolution 64 --times 26 --seed 1 --out runs/bench-data/ds-test.h5
	$(PY) scripts/bench/pihc_moe.py --ds-train runs/bench-data/ds-train.h5 --ds-test runs/bench-data/ds-test.h5
	$(PY) scripts/bench/pinns.py --part table --seeds 3
