# City Kiosk — every target sets itself up: venv, pip, and (as root) the Debian packages it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# libzbar0: pyzbar's decoder; libfribidi0 + libharfbuzz0b: Pillow's raqm layout for Persian;
# libgl1/libglib2.0-0: OpenCV; socat is handy for poking the emulators by hand.
# postgresql-15: the server binaries the PostgreSQL tests start a throwaway cluster from
# (initdb in a temp dir, Unix socket only) when KIOSK_TEST_PG_URL is unset.
DEB_PACKAGES := libzbar0 libfribidi0 libharfbuzz0b libglib2.0-0 postgresql-15
# systemd: systemd-analyze, systemd-sysusers and systemd-tmpfiles, which tests/test_deploy.py runs on deploy/
DEB_PACKAGES += systemd
# shellcheck: tests/test_deploy.py lints deploy/install.sh with it
DEB_PACKAGES += shellcheck
# the device simulator panel's browser test (tests/test_panel_browser.py) runs Debian's headless
# chromium through playwright; no browser is ever downloaded (`playwright install` is never run)
DEB_PACKAGES += chromium
# the touch UI (Kivy): GL and EGL with Mesa's software renderer (SDL's offscreen driver runs the UI
# tests and `kiosk ui-tour` with no display), libmtdev1 for Kivy's multitouch input on a real panel
DEB_PACKAGES += libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri libmtdev1
# xvfb: `make run` with no display runs the touch kiosk on a virtual X screen (Xvfb -displayfd)
DEB_PACKAGES += xvfb
# audio guidance on the touch UI: espeak-ng and its Persian voice (kiosk/speech.py, tests/test_speech.py)
DEB_PACKAGES += espeak-ng
# Debian creates and starts a "main" cluster on port 5432 when PostgreSQL is first installed;
# the tests do not need one, so while we install it this drop-in says not to (then it goes).
PG_NO_CLUSTER := /etc/postgresql-common/createcluster.d/city-kiosk-no-main-cluster.conf

.PHONY: run test bench deps venv clean

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    dropin=""; \
	    if ! dpkg -s postgresql-common >/dev/null 2>&1 && [ ! -e $(PG_NO_CLUSTER) ]; then \
	      mkdir -p $(dir $(PG_NO_CLUSTER)) && echo "create_main_cluster = false" > $(PG_NO_CLUSTER) && dropin=1; \
	    fi; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    (apt-get install -y -qq --no-install-recommends $$missing >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing)); status=$$?; \
	    if [ -n "$$dropin" ]; then rm -f $(PG_NO_CLUSTER); fi; \
	    exit $$status; \
	  else echo "warning: missing Debian packages:$$missing (run as root or install them)"; fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[server,test]'
	@touch $(STAMP)

venv: deps $(STAMP)

# the demo kiosk with its simulators and their panel (kiosk/ui_main.py, docs/ui.md "Running it"):
# a window when there is a display; with none, the headless walk-through, then the touch kiosk
# on a virtual screen, kept up until Ctrl-C only when stdin is a terminal
run: venv
	$(VENV)/bin/kiosk ui-demo

# two workers (a file's tests stay on one: its module fixtures are shared), the files in
# collection order, which puts the few that take minutes first (tests/conftest.py LONG_MODULES;
# xdist's own order, most tests first, left them to one worker at the end); then the timing
# tests alone, so a benchmark is never measured beside another test's load
test: venv
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder -m "not serial"
	$(PY) -m pytest -q -p no:cacheprovider -m serial

bench: venv
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info

# a fleet on one machine (issue 11): fleet server on SQLite, a kiosk enrolling with its own key,
# configuration and a command; then the server keeps running for `fleet …` / `kiosk agent …`
.PHONY: run-fleet
run-fleet: venv
	$(PY) -m provisioning.demo --serve
