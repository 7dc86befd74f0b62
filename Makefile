# Two commands a user needs: `make demo` and `make test`. Both create .venv (Python 3.10)
# when it is missing. Override the interpreter with `make test PYTHON=/path/to/python3.10`.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export PYTHONHASHSEED := 0

# Python 3.10: an explicit PYTHON=, else python3.10 on PATH, else pyenv's newest 3.10.
PYTHON ?= $(shell \
  if python3.10 --version >/dev/null 2>&1; then command -v python3.10; \
  elif command -v pyenv >/dev/null 2>&1; then \
    v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10\.[0-9]+$$' | sort -t. -k3 -n | tail -1); \
    [ -n "$$v" ] && echo "$$(pyenv prefix $$v)/bin/python3.10"; \
  fi)

.PHONY: setup demo test bench quality kubeflow clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@if [ ! -x "$(PY)" ]; then \
	  if [ -z "$(PYTHON)" ] || ! "$(PYTHON)" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
	    echo "error: Python 3.10 is needed (TFX 1.16 supports 3.9-3.10) and none was found;" \
	         "install it (e.g. 'pyenv install 3.10.13') or pass PYTHON=/path/to/python3.10" >&2; \
	    exit 2; \
	  fi; \
	  echo "creating $(VENV) with $(PYTHON)"; \
	  "$(PYTHON)" -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade 'pip<25' 'setuptools<76' wheel
	$(PY) -m pip install --quiet -c constraints.txt -e .
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/vog-audit demo --output demo_output

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m benchmarks.vog_throughput --output bench_output
	$(PY) -m benchmarks.record_work --output bench_output
	$(PY) -m benchmarks.ranking_size --output bench_output
	$(PY) -m benchmarks.small_files --output bench_output

# Label-error signals against VoG and cleanlab, auto's choice and the flag kinds
# (benchmarks/quality.py), and where the slices rank planted wrong labels
# (benchmarks/slice_quality.py). cleanlab is needed by this benchmark only; 2.7.1 installs
# without changing any pinned package.
quality: setup
	$(PY) -m pip install --quiet -c constraints.txt 'cleanlab==2.7.1'
	$(PY) -m benchmarks.quality --output quality_output
	$(PY) -m benchmarks.slice_quality --output quality_output/slices.json

kubeflow: setup
	$(PY) -m kubeflow.compile --output kubeflow/build

clean:
	rm -rf demo_output bench_output quality_output kubeflow/build
