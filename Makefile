# grlib: `make report` (the main job) and `make test` (the whole suite).
# Both create .venv on first use and install grlib with the pinned CPU torch.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.grlib-installed
SCRATCH := $(CURDIR)/.scratch
# keep Jupyter, IPython and matplotlib state inside the project (not in ~)
export JUPYTER_CONFIG_DIR  := $(SCRATCH)/jupyter/config
export JUPYTER_DATA_DIR    := $(SCRATCH)/jupyter/data
export JUPYTER_RUNTIME_DIR := $(SCRATCH)/jupyter/runtime
export IPYTHONDIR          := $(SCRATCH)/ipython
export MPLCONFIGDIR        := $(SCRATCH)/matplotlib
export PYTHONUNBUFFERED    := 1

.PHONY: install test report compare data tune lab bench bench-recorder bench-ddp bench-detection bench-fashion-paper clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[notebooks,dev]"
	touch $(STAMP)

test: install
	mkdir -p $(SCRATCH)
	OMP_NUM_THREADS=1 $(PY) -m pytest -ra

report: install
	$(VENV)/bin/grlib report default --workers 2

compare: install
	$(VENV)/bin/grlib compare

data: install
	$(VENV)/bin/grlib data fetch

tune: install
	$(VENV)/bin/grlib tune

# JupyterLab on notebooks/ with the project's kernel (the venv's python, grlib installed editable)
lab: install
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (grlib)" >/dev/null
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root,)

bench: install
	$(PY) benchmarks/bench_step.py

bench-recorder: install
	$(PY) benchmarks/bench_recorder.py all

# the detection benchmark (issue 10): cached and resumable, ~90 min on 2 cores from a fresh state
bench-detection: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/detection_benchmark.py --workers 2

# the Fashion-MNIST benchmark under the paper's protocol (issue 11): cached, resumable; hours on 2 cores
bench-fashion-paper: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/fashion_benchmark.py --spec benchmarks/fashion_mnist_paper.yaml --workers 2

bench-ddp: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_ddp.py

clean:
	rm -rf $(SCRATCH) reports .pytest_cache
