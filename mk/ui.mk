# Operator UI (issue 9): the Streamlit app in app/ui/ and its browser tests.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

.PHONY: browser-setup ui test-ui

browser-setup: ## Install Debian's chromium for the browser tests if /usr/bin/chromium is missing (idempotent)
	@if [ -x $(CHROMIUM) ]; then \
		echo "chromium present: $$($(CHROMIUM) --version 2>/dev/null)"; \
	else \
		echo "installing Debian's chromium (apt)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; \
		$(CHROMIUM) --version; \
	fi

ui: $(VENV)/.installed ## Start the operator UI (Streamlit) on 127.0.0.1:SFMLOPS_UI_PORT (default 8501)
	$(PY) -m app.ui

test-ui: $(VENV)/.dev-installed browser-setup ## UI tests: AppTest views and the Playwright/chromium browser test
	$(PY) -m pytest tests/ui $(PYTEST_ARGS)

# `make setup-dev` also provides the browser the UI tests drive.
setup-dev: browser-setup
