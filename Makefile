# fmnist-cluster — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/fmnist-cluster
STAMP := $(VENV)/.installed
OUT ?= outputs
FMNIST ?= ../shared/data/fashion-mnist

.PHONY: help install test lint format demo robustness bench-data bench-cnn bench-groupings bench-explain sample clean

help: ## Show this list of targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the toolkit with its dev tools

test: $(STAMP) ## Run the test suite (installs first if needed): two processes, then the timing-sensitive tests alone
	$(PY) -m pytest -n 2 -m "not serial"
	$(PY) -m pytest -m serial

lint: $(STAMP) ## Check style with ruff
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

format: $(STAMP) ## Reformat the code with ruff
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts
	$(VENV)/bin/ruff format src tests benchmarks scripts

DEMO := $(OUT)/demo
demo: $(STAMP) ## The main job: every stage, offline, on the shipped sample (outputs/demo, report in outputs/demo/report)
	$(CLI) preprocess --source sample --out $(DEMO)/data
	$(CLI) train-som --config configs/som-demo.yaml --input $(DEMO)/data --out $(DEMO)/som
	$(CLI) tune --config configs/tune-demo.yaml --input $(DEMO)/data --out $(DEMO)/tune
	$(CLI) preprocess --source sample --set relabel=random --out $(DEMO)/mystery
	$(CLI) train-cnn --config configs/cnn-demo.yaml --input $(DEMO)/mystery --out $(DEMO)/cnn
	$(CLI) encode --model $(DEMO)/cnn --input $(DEMO)/mystery --out $(DEMO)/encoding
	$(CLI) train-cnn --config configs/cnn-demo.yaml --input $(DEMO)/data --out $(DEMO)/cnn-reference
	$(CLI) cluster --input $(DEMO)/encoding --originals $(DEMO)/data --reference $(DEMO)/cnn-reference --out $(DEMO)/cluster
	$(CLI) embed --input $(DEMO)/encoding --out $(DEMO)/embed
	$(CLI) report $(foreach s,data som tune mystery cnn cnn-reference encoding cluster embed,--input $(DEMO)/$(s)) --out $(DEMO)/report

DATA ?=
MYSTERY := $(OUT)/mystery
.PHONY: mystery-study study
mystery-study: $(STAMP) ## Mystery-label study on a Twisted CSV folder: make mystery-study DATA=dir (needs $(FMNIST) for decoding)
	@test -n "$(DATA)" || { echo "error: DATA is not set; run make mystery-study DATA=folder-with-x_train.csv"; exit 2; }
	$(CLI) preprocess --source twisted-csv --path $(DATA) --out $(MYSTERY)/data
	$(CLI) preprocess --source idx --path $(FMNIST) --out $(MYSTERY)/originals
	$(CLI) train-cnn --config configs/cnn-reference.yaml --input $(MYSTERY)/data --out $(MYSTERY)/cnn-reference
	$(CLI) train-cnn --config configs/cnn.yaml --input $(MYSTERY)/data --out $(MYSTERY)/cnn
	$(CLI) encode --model $(MYSTERY)/cnn --input $(MYSTERY)/data --out $(MYSTERY)/encoding
	$(CLI) cluster --input $(MYSTERY)/encoding --originals $(MYSTERY)/originals --out $(MYSTERY)/cluster
	$(CLI) cluster --input $(MYSTERY)/encoding --out $(MYSTERY)/cluster-published --set kmeans.k=5 \
		--set dbscan.eps=500 --set dbscan.min_samples=8000 --set hdbscan.enabled=false --set agglomerative.enabled=false \
		--set dbscan.reduce.pca_components=null
	$(CLI) embed --input $(MYSTERY)/encoding --out $(MYSTERY)/embed
	$(CLI) report $(foreach s,data cnn-reference cnn encoding cluster cluster-published embed,--input $(MYSTERY)/$(s)) \
		--out $(MYSTERY)/report

study: som-study mystery-study ## Both studies, then one report over everything: make study DATA=dir
	$(CLI) report $(foreach s,data som som-seed tune,--input $(OUT)/som-study/$(s)) \
		$(foreach s,data cnn-reference cnn encoding cluster cluster-published embed,--input $(MYSTERY)/$(s)) \
		--out $(OUT)/study/report

robustness: $(STAMP) ## Run every hostile-input case of benchmarks/robustness.py and write docs/robustness.md (about a minute)
	$(PY) benchmarks/robustness.py --doc docs/robustness.md

bench-data: $(STAMP) ## Time preprocess on the real IDX folder and a 60,000-row Twisted CSV
	$(PY) benchmarks/preprocess.py --data $(FMNIST)

bench-explain: $(STAMP) ## Agreement and seconds of the mystery-label explainer on drawn rules of every family (70,000 images)
	$(PY) benchmarks/explain.py --fmnist $(FMNIST) --draws 3

bench-cnn: $(STAMP) ## Time and score train-cnn (reference, own, ours) and encode on the real data (about an hour: the sum of the runs in docs/benchmarks.md)
	$(PY) benchmarks/cnn.py --fmnist $(FMNIST) \
		--run reference:idx --run cnn:idx --run own:idx \
		--run cnn:tw:0,1,0,1,2,3,2,3,4,3 --run cnn:tw:0,0,1,1,2,2,3,3,4,4 --run reference:tw:0,1,0,1,2,3,2,3,4,3 \
		--run cnn:tw:0,0,1,1,2,1,2,3,3,4 --run reference:tw:0,0,1,1,2,1,2,3,3,4 \
		--encode cnn:idx

BENCH_CNN ?= /tmp/fmnist-cnn-bench
bench-groupings: $(STAMP) ## Accuracy of bench-cnn's 10-class runs over every grouping into 5 mystery labels (after bench-cnn)
	$(PY) benchmarks/groupings.py cnn=$(BENCH_CNN)/cnn-cnn-idx reference=$(BENCH_CNN)/cnn-reference-idx \
		--calibrate reference=0.9226 --mark 0,1,0,1,2,3,2,3,4,3 --mark 0,0,1,1,2,2,3,3,4,4 --mark 0,0,1,1,2,1,2,3,3,4

.PHONY: som-study bench-som
som-study: $(STAMP) ## SOM study on all 70,000 images: 50x50 map on the 60,000 train, scored on the 10,000 test
	$(CLI) preprocess --source idx --path $(FMNIST) --out $(OUT)/som-study/data
	$(CLI) train-som --config configs/som.yaml --input $(OUT)/som-study/data --out $(OUT)/som-study/som
	$(CLI) train-som --config configs/som-seed.yaml --input $(OUT)/som-study/data --out $(OUT)/som-study/som-seed
	$(CLI) tune --config configs/tune.yaml --input $(OUT)/som-study/data --out $(OUT)/som-study/tune

bench-som: $(STAMP) ## Benchmark the SOM engines (MiniSom, XPySom if installed, ours) on 60,000 x 784, 50x50
	$(PY) benchmarks/som.py --data $(FMNIST) --out $(OUT)/bench-som/som.json

.PHONY: bench-embed
bench-embed: $(STAMP) ## Time t-SNE (openTSNE against scikit-learn) on 10,000 x 64, then on all 70,000 images
	$(PY) benchmarks/embed.py --data $(FMNIST) --out $(OUT)/bench-embed/embed.json

sample: $(STAMP) ## Rebuild the shipped sample from the real data in $(FMNIST)
	$(PY) scripts/build_sample.py $(FMNIST)

clean: ## Remove outputs/ and caches (keeps .venv)
	rm -rf $(OUT) .pytest_cache .ruff_cache .hypothesis
