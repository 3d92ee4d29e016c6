# Two commands on a fresh clone: `make demo` (a small sweep on the embedded defaults) and `make test`.
# Each creates .venv if needed and installs genlab with the exact versions of constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.genlab-installed
DEMO   ?= sweeps/improved_gan/digits_sweep.yaml

.PHONY: demo test lint install clean-results reports

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# mujoco 4 came as mujoco + mujoco-core + mujoco-studio, all writing into mujoco/; genlab pins mujoco 3.17.0
	@# (dm_control), which pip installs over them without removing the other two: remove them first.
	$(BIN)/python -m pip uninstall -q -y mujoco-core mujoco-studio 2>/dev/null || true
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $@

demo: $(STAMP)
	$(BIN)/genlab sweep $(DEMO) --set name=digits-demo-$$(date +%Y%m%d-%H%M%S) --num-cpus 2

# Two pytest workers, a test file each at a time (a file's tests share its Ray): on 2 cores the suite takes 0.8x
# the time of one process (21 vs 26 min; a Ray test's processes starting are CPU-bound, so not 0.5x; README, Tests).
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

# The checked-in study reports, docs/reports/<study>/: each CI-scale study on the held-out seeds its spec draws
# (sweeps/studies/*.yaml), then its page; a GAIL study's expert demonstrations first, if missing. Hours on 2 cores:
# STUDIES=... picks some; an interrupted study resumes.
STUDIES ?= improved_gan_digits infogan_digits iaf_vae_digits vime_mountaincar_weak vime_mountaincar_weak_more vime_mountaincar gail_pendulum improved_gan_mnist5k improved_gan_mnist5k_300 \
           infogan_mnist5k iaf_vae_mnist5k gail_hopper gail_halfcheetah
reports: $(STAMP)
	@for s in $(STUDIES); do \
	  case $$s in gail_*) e=$${s#gail_}; test -f results/experts/$$e/demos.parquet || \
	    $(BIN)/genlab expert sweeps/gail/$${e}_expert.yaml || exit 1;; esac; \
	  name=$$($(BIN)/python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['name'])" sweeps/studies/$$s.yaml); \
	  resume=$$(test -d results/reports/$$name && echo --resume); \
	  $(BIN)/genlab study sweeps/studies/$$s.yaml --storage results/reports --num-cpus 2 $$resume || exit 1; \
	  rm -rf docs/reports/$$name && $(BIN)/genlab report $$name --out docs/reports/$$name && rm docs/reports/$$name/report.html || exit 1; \
	done

clean-results:
	rm -rf results mlflow.db mlartifacts
