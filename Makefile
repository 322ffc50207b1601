# Every target does its own set-up, idempotently: Debian packages, then .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What `make install` needs to build and run macvland (the booted test's root has them too).
DEBS := libsystemd-dev pkg-config gcc iproute2 systemd libcap2-bin util-linux
# What the tests need besides: iputils-ping for the datapath tests; prometheus (for promtool)
# and prometheus-node-exporter, as the metrics tests use the real tools; mmdebstrap and
# systemd-container (systemd-nspawn) for the booted system test (tests/test_booted.py);
# mmdebstrap also builds the root the container check runs (no container engine here).
TEST_DEBS := iputils-ping prometheus prometheus-node-exporter mmdebstrap systemd-container
# Where `make install` puts things (override for a staged or test install).
PREFIX ?= /usr/local
LIBDIR ?= /opt/macvland
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
# journalctl reads catalogs from /usr/lib/systemd/catalog and /usr/local/lib/systemd/catalog.
CATALOGDIR ?= $(PREFIX)/lib/systemd/catalog
STAMP := $(VENV)/.installed

.PHONY: demo test lint deps install-deps install clean bench generated

# $(call debian,PACKAGES): install those missing, with python3-venv and python3-dev.
define debian
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	$(PYTHON) -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_path("include") + "/Python.h")' \
		2>/dev/null || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

deps:
	$(call debian,$(DEBS) $(TEST_DEBS))

install-deps:
	$(call debian,$(DEBS))

$(STAMP): pyproject.toml | deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --config-settings editable_mode=compat -e '.[test]'
	touch $@

demo: deps $(STAMP)
	./scripts/demo.sh

lint: deps $(STAMP)
	$(BIN)/ruff check macvland tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# The README's settings table and etc/macvland/macvland.schema.json, from macvland/settings.py.
generated: deps $(STAMP)
	$(BIN)/python -m macvland.schema --write

# Needs root; prints a table and writes bench/results.json.
# BENCH_ARGS="--sizes 10 --wide-sizes 20 --quick" for a quick run; see the README for the rest.
bench: deps $(STAMP)
	$(BIN)/python -m bench.bench $(BENCH_ARGS)

# The package goes into its own virtualenv (Debian's Python refuses system-wide pip installs),
# linked from $(PREFIX)/bin. An existing spec is never overwritten; a new one starts empty,
# with the annotated example below it commented out, so nothing is created by surprise.
install: install-deps
	test -x $(LIBDIR)/bin/python || $(PYTHON) -m venv $(LIBDIR)
	$(LIBDIR)/bin/pip install -q .
	install -d $(PREFIX)/bin
	ln -sf $(LIBDIR)/bin/macvland $(PREFIX)/bin/macvland
	install -D -m 0644 README.md $(PREFIX)/share/doc/macvland/README.md
	install -D -m 0644 etc/macvland/macvland.yaml $(PREFIX)/share/doc/macvland/macvland.yaml.example
	install -D -m 0644 etc/macvland/macvland.schema.json $(PREFIX)/share/doc/macvland/macvland.schema.json
	install -D -m 0644 etc/macvland/host-shim.yaml $(PREFIX)/share/doc/macvland/host-shim.yaml.example
	# So that `ip route` names macvland's routing protocol number (77): `proto macvland`.
	install -D -m 0644 etc/iproute2/rt_protos.d/macvland.conf \
		$(SYSCONFDIR)/iproute2/rt_protos.d/macvland.conf
	sed 's#/usr/local/bin/macvland#$(PREFIX)/bin/macvland#; s#/usr/local/share/doc#$(PREFIX)/share/doc#' \
		systemd/macvland.service > macvland.service.tmp
	install -D -m 0644 macvland.service.tmp $(UNITDIR)/macvland.service
	rm -f macvland.service.tmp
	sed 's#/usr/local/share/doc#$(PREFIX)/share/doc#' systemd/macvland.catalog > macvland.catalog.tmp
	install -D -m 0644 macvland.catalog.tmp $(CATALOGDIR)/macvland.catalog
	rm -f macvland.catalog.tmp
	@if [ -e $(SYSCONFDIR)/macvland/macvland.yaml ]; then \
		echo "keeping the existing $(SYSCONFDIR)/macvland/macvland.yaml"; \
	else \
		install -d $(SYSCONFDIR)/macvland; \
		{ printf 'version: 1\ninterfaces: []\n\n# The annotated example, for reference:\n'; \
		  sed 's/^/# /' etc/macvland/macvland.yaml; } > $(SYSCONFDIR)/macvland/macvland.yaml; \
	fi
	@if [ -d /run/systemd/system ]; then systemctl daemon-reload; journalctl --update-catalog; fi
	@echo "installed; start with: systemctl enable --now macvland"

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
