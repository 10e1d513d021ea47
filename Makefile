# cscnb — the two commands of the README:
#   make book   set up, execute every chapter (into copies under _build), render the site to _build/html;
#               leaves every tracked file unchanged
#   make test   set up, ruff lint, unit tests, strict nbval on every chapter, warnings-as-errors book build,
#               then the browser test of the built site (offline, in Debian's chromium)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
STAMP := $(VENV)/.cscnb-installed
CHAPTERS := $(sort $(wildcard chapters/*.ipynb))
export PYTHONHASHSEED := 0

.PHONY: book test setup execute html html-strict unit nbval site-browser site-test lint lock clean help lab \
        bench-setup bench

help:
	@echo "make book   - set up .venv, execute every chapter into _build/book-src, render the site to _build/html"
	@echo "make test   - set up .venv, ruff lint, unit tests, strict nbval on every chapter, -W book build, site test"
	@echo "make execute - re-execute the committed chapters in place (for authors; then commit the outputs)"
	@echo "make html / html-strict / unit / nbval / site-test / lint / lock / lab / clean - the individual steps"
	@echo "make bench  - install the benchmark-only extras, run every benchmark, JSON to _build/bench/"

# PyTorch: the lock pins torch==X (no local version tag) and we install the CPU build, from the PyTorch
# CPU index. The torch wheel is installed first, on its own: from a local wheel directory that pip's
# configuration already names (find-links) when it holds the pinned version -- then no index is
# contacted for it -- else from $(TORCH_INDEX). The lock install that follows finds torch satisfied.
# A CUDA build instead: make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128 (on a fresh .venv).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIN = $(shell grep -m1 '^torch==' requirements/lock.txt)
define INSTALL_TORCH
$(1) -m pip install --quiet --disable-pip-version-check --no-deps --no-index "$(TORCH_PIN)" 2>/dev/null \
  || $(1) -m pip install --quiet --disable-pip-version-check --no-deps --index-url $(TORCH_INDEX) "$(TORCH_PIN)"
endef

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(call INSTALL_TORCH,$(BIN)/python)
	$(PIP) install --quiet -r requirements/lock.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP) site-browser

# Debian's chromium for the browser test of the site (tests/test_site.py), driven by Playwright
# with executable_path (never `playwright install`, which downloads a browser build). Installed
# with apt-get when missing, where we are root; elsewhere the site test skips and says why.
CHROMIUM ?= /usr/bin/chromium
site-browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the site test (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else \
	  echo "NOTE: $(CHROMIUM) is missing and cannot be installed here (needs root and apt-get): the site test will be skipped"; \
	fi

# nbclient records per-cell timestamps; they change on every run and carry no information
export STRIP_TIMING := import nbformat, sys; nb = nbformat.read(sys.argv[1], 4); [c.metadata.pop("execution", None) for c in nb.cells]; nbformat.write(nb, sys.argv[1])

# $(call EXECUTE_CHAPTERS,OUTPUT-OPTION,AFTER): restart-and-run-all every chapter with `jupyter execute`
# (the kernel's working directory is chapters/ in both uses). The executor's stderr goes to
# _build/execute/NAME.log; when a chapter fails, the failing cell and its traceback (or the whole log)
# are printed and the loop stops. AFTER is run on each executed notebook path.
define EXECUTE_CHAPTERS
@mkdir -p _build/execute
@for nb in $(CHAPTERS); do \
  name=$$(basename "$$nb" .ipynb); log=_build/execute/$$name.log; start=$$SECONDS; \
  if ! $(BIN)/jupyter execute $(1) --timeout=900 --kernel_name=python3 "$$nb" 2> "$$log"; then \
    echo "FAILED: $$nb (executor log: $$log)"; \
    sed -n '/An error occurred while executing the following cell/,$$p' "$$log" | grep . || cat "$$log"; \
    exit 1; \
  fi; \
  $(2); \
  printf "executed %-45s %4d s\n" "$$nb" "$$((SECONDS - start))"; \
done
endef

# For authors: re-execute the committed chapters IN PLACE (then commit the outputs).
execute: setup
	$(call EXECUTE_CHAPTERS,--inplace,$(BIN)/python -c "$$STRIP_TIMING" "$$nb")

html: setup
	$(BIN)/jupyter-book build . --quiet

html-strict: setup
	$(BIN)/jupyter-book build . -W -n --keep-going --quiet

# The reader's command. Chapters are executed into copies and the site is rendered from a staging
# source tree, so no tracked file changes: _build/book-src/ links every top-level entry of the
# repository except chapters/ (and _build, the generated ledger.md), and its chapters/ holds the
# executed copies (the kernel still runs in chapters/, as in `make execute`). jupyter-book renders
# that tree to _build/html (--path-output .), exactly like `make html` renders the committed outputs.
BOOK_SRC := _build/book-src
book: setup
	rm -rf $(BOOK_SRC) && mkdir -p $(BOOK_SRC)/chapters
	@for f in *; do case "$$f" in _build|chapters|ledger.md) ;; *) ln -s "../../$$f" "$(BOOK_SRC)/$$f" ;; esac; done
	@for f in chapters/*; do case "$$f" in *.ipynb) ;; *) ln -s "../../../$$f" "$(BOOK_SRC)/$$f" ;; esac; done
	$(call EXECUTE_CHAPTERS,--output=$(CURDIR)/$(BOOK_SRC)/chapters/{notebook_name},:)
	CSCNB_LEDGER_EXECUTED=1 $(BIN)/jupyter-book build $(BOOK_SRC) --path-output . --quiet
	@echo "Open _build/html/index.html in a browser."

unit: setup
	$(BIN)/python -m pytest -q -m "not site" tests

# Strict nbval: every stored output must be reproduced (only the sanitizer's patterns are masked).
# The per-cell results go to _build/nbval-junit.xml and the commit they belong to to
# _build/nbval-run.json; the claims ledger page (_ext/cscnb_ledger.py) reads both.
nbval: setup
	@mkdir -p _build && rm -f _build/nbval-junit.xml
	@printf '{"commit": "%s", "dirty": %s}\n' "$$(git rev-parse HEAD 2>/dev/null)" \
	  "$$(if [ -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then echo true; else echo false; fi)" \
	  > _build/nbval-run.json
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -n 2 --dist loadfile \
	  --junitxml=_build/nbval-junit.xml $(CHAPTERS)

# Browser test of the site html-strict just built: every page opened offline (file://) in
# chromium, no network; screenshots of every chapter (light and dark) in _build/screenshots/.
site-test: setup
	CSCNB_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -p no:cacheprovider -m site tests/test_site.py

# ruff (pinned in the lock; configuration in pyproject.toml): the package, tests, benchmarks, scripts
# and chapters (cell by cell). Part of `make test`, run first (see README, "Linting").
lint: setup
	$(BIN)/ruff check .

test: lint unit nbval html-strict site-test

# Regenerate requirements/lock.txt (and requirements/bench.txt) from pyproject.toml: a FRESH venv,
# torch from $(TORCH_INDEX) (CPU build; see INSTALL_TORCH), then `pip install -e .[$(LOCK_EXTRAS)]`
# constrained to the current lock, so nothing changes version unless pyproject asks for it (to move a
# pin, edit or delete its line in the lock first). Editable, so that setuptools leaves no build/
# folder in the tree. The benchmark extra is locked separately: only the packages it adds on top of
# the lock go to requirements/bench.txt.
LOCK_VENV := _build/lock-venv
LOCK_EXTRAS := book,test,lint
define LOCK_HEADER
# Full pinned environment of the book, the package and its tests: what `make setup` installs.
# Generated by `make lock` from pyproject.toml (extras $(LOCK_EXTRAS)) in a fresh venv; do not edit
# by hand. torch is the CPU build from the PyTorch CPU index, $(TORCH_INDEX)
# (on Linux, PyPI's torch wheel of the same version is the CUDA build). `make setup` installs it from
# there unless a local wheel directory already has it; by hand:
#   pip install --extra-index-url $(TORCH_INDEX) -r requirements/lock.txt
endef
export LOCK_HEADER
define BENCH_HEADER
# Benchmark-only dependencies (pyproject extra "bench": sporco, for benchmarks/bench_solvers.py, problem (b)),
# pinned: the packages `pip install .[bench]` adds on top of requirements/lock.txt. Generated by `make lock`.
# NOT part of requirements/lock.txt: the book, the tests and CI never import them.
# Install on top of the locked environment:  .venv/bin/pip install -r requirements/bench.txt
endef
export BENCH_HEADER
# The oldest Python every locked package accepts (their Requires-Python), for the lock's header.
export PYTHON_FLOOR := from importlib.metadata import distributions as ds; from packaging.specifiers import SpecifierSet as S; req = [S(d.metadata.get("Requires-Python") or "") for d in ds()]; print(next(v for v in (f"3.{m}.{p}" for m in range(8, 20) for p in range(40)) if all(v in s for s in req)))
FREEZE = $(LOCK_VENV)/bin/python -m pip freeze --all --exclude cscnb | grep -v '^pip==' | sed 's/+cpu$$//'
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(call INSTALL_TORCH,$(LOCK_VENV)/bin/python)
	$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c requirements/lock.txt -e ".[$(LOCK_EXTRAS)]"
	$(LOCK_VENV)/bin/python -m pip check
	$(FREEZE) > _build/lock.txt.new
	$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  -c _build/lock.txt.new -c requirements/bench.txt -e ".[bench]"
	$(FREEZE) | LC_ALL=C sort | LC_ALL=C comm -13 <(LC_ALL=C sort _build/lock.txt.new) - > _build/bench.txt.new
	( echo "$$LOCK_HEADER"; \
	  echo "# Made with CPython $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version())');" \
	    "these pins need Python >= $$($(LOCK_VENV)/bin/python -c "$$PYTHON_FLOOR")."; \
	  cat _build/lock.txt.new ) > requirements/lock.txt
	( echo "$$BENCH_HEADER"; cat _build/bench.txt.new ) > requirements/bench.txt
	rm -rf $(LOCK_VENV) _build/lock.txt.new _build/bench.txt.new
	@git diff --stat -- requirements/ 2>/dev/null || true

clean:
	rm -rf _build .pytest_cache ledger.md

# JupyterLab is not part of the pinned test set; installed into .venv on first use, constrained to the
# lock so that no locked package changes version. Jupyter refuses to run as root unless told to
# (containers often run as root): --allow-root is added only then.
JUPYTERLAB_VERSION ?= 4.6.6
lab: setup
	test -x $(BIN)/jupyter-lab || $(PIP) install --quiet -c requirements/lock.txt "jupyterlab==$(JUPYTERLAB_VERSION)"
	$(BIN)/jupyter lab $$(if [ "$$(id -u)" = 0 ]; then echo --allow-root; fi) chapters/

# Benchmarks (never part of `make test`): requirements/bench.txt adds sporco for bench_solvers' problem (b).
# Each script's JSON goes to a temporary file first and replaces _build/bench/NAME.json only on success,
# so a failed or interrupted run never destroys the previous figures.
BENCH_STAMP := $(VENV)/.cscnb-bench-installed
BENCHMARKS ?= bench_solvers bench_csc_layer bench_memory bench_chapters bench_power_iters
$(BENCH_STAMP): requirements/bench.txt $(STAMP)
	$(PIP) install --quiet -r requirements/bench.txt
	touch $(BENCH_STAMP)

bench-setup: setup $(BENCH_STAMP)

bench: bench-setup
	@mkdir -p _build/bench
	@for b in $(BENCHMARKS); do \
	  echo "running benchmarks/$$b.py"; \
	  $(BIN)/python benchmarks/$$b.py > _build/bench/$$b.json.tmp && mv _build/bench/$$b.json.tmp _build/bench/$$b.json \
	    || { echo "FAILED: benchmarks/$$b.py (previous _build/bench/$$b.json kept)"; rm -f _build/bench/$$b.json.tmp; exit 1; }; \
	done

# GPU machines (never part of `make test`). The lock installs the CPU build of torch; gpu-setup replaces it
# with the CUDA build of the same version from PyTorch's index WITH its dependencies (the nvidia-* wheels
# holding cuBLAS, cuDNN, NCCL, ...; triton), keeping every other pinned package, then checks that CUDA works.
# CUDA_TAG picks the build (cu128 = CUDA 12.8; it must be supported by the machine's driver).
CUDA_TAG ?= cu128
.PHONY: gpu-setup gpu-check
gpu-setup: setup
	sed 's/cu128/$(CUDA_TAG)/g' requirements/gpu.txt > $(VENV)/gpu-requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -r $(VENV)/gpu-requirements.txt
	$(BIN)/python -c "import torch, importlib.metadata as m; \
	  assert torch.cuda.is_available(), f'torch {torch.__version__}: CUDA is not available (driver? CUDA_TAG?)'; \
	  x = torch.randn(8, 3, 32, 32, device='cuda'); torch.nn.functional.conv2d(x, torch.randn(4, 3, 3, 3, device='cuda')); \
	  libs = sorted(d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].startswith('nvidia-')); \
	  print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version(), \
	        'on', torch.cuda.get_device_name(0)); print('nvidia wheels:', ', '.join(libs) or 'none')"

# One command on a GPU machine, <= 8 minutes: CUDA tests, the CSC layer and memory on the GPU, a 1-process
# NCCL DDP run, float32 / bf16 / compiled training throughput of resnet18, sdnet18, sdnet18_all; JSON to
# _build/gpu-check/. Without CUDA it says so and exits 0. GPU_CHECK_ARGS passes options (--help lists them).
GPU_CHECK_ARGS ?=
gpu-check: setup
	$(BIN)/python -m cscnb.train.gpu_check $(GPU_CHECK_ARGS)
