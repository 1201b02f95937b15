# Thin wrappers over the README's two commands (scope_lib/bootstrap.py does the work, so the
# same commands also run on machines without make).
PYTHON ?= python3

.PHONY: setup test test-slow notebooks lab
setup:
	$(PYTHON) -m scope_lib.bootstrap setup

test:
	$(PYTHON) -m scope_lib.bootstrap test

test-slow:
	SCOPE_SLOW=1 $(PYTHON) -m scope_lib.bootstrap test -m slow

notebooks:
	$(PYTHON) -m scope_lib.bootstrap notebooks

lab:
	$(PYTHON) -m scope_lib.bootstrap lab
