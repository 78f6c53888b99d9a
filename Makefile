# The two set-up commands of the README: `make demo` (the main job) and `make test` (every test).
PYTHON ?= python
STAMP := .install.stamp

.PHONY: install demo test

# torch is installed first and pinned so pip takes the CPU build, not a multi-GB CUDA one.
$(STAMP): pyproject.toml
	$(PYTHON) -m pip install --quiet "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[notebooks,test,course]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	dreamcache-lite demo

test: install
	HF_HUB_OFFLINE=1 DREAMCACHE_FAST=1 $(PYTHON) -m pytest tests notebooks --nbval-lax -p no:cacheprovider
