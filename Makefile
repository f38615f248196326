# The two commands a fresh machine needs (see README):
#   make run    train, compress, export, evaluate and deploy the default model (digits) -> runs/digits
#   make test   the whole test suite (installs the ARM toolchain, QEMU and ser2net when run as root)
# Both create the virtual environment in .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= runs/digits

.PHONY: run test toolchain firmware bench clean

# labgrid's pyserial-labgrid and pyserial both ship the `serial` package; which files win is pip's
# install order. The fork is reinstalled last, so `serial` is labgrid's, as labgrid expects (and
# tests/farm/test_labgrid.py checks tinyfarm's URL handlers against it).
$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,labgrid]'
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps pyserial-labgrid
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tinyfarm run --out $(OUT)

# apt-get only when a tool is missing and we are root; otherwise the tests that need it skip.
toolchain:
	@if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null \
	    || ! command -v cmake >/dev/null || ! [ -x /usr/sbin/ser2net ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing the ARM toolchain, CMake, QEMU and ser2net (apt-get)"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	      gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib \
	      qemu-system-arm cmake ser2net >/dev/null; \
	  else echo "ARM toolchain, QEMU or ser2net missing and not root: their tests will skip"; fi; \
	fi

test: $(STAMP) toolchain
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) firmware/build runs
