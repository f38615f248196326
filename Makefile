# The two commands a fresh machine needs (see README):
#   make run    train, compress, export, evaluate and deploy the default model (digits) -> runs/digits
#   make test   the whole test suite (installs the ARM toolchain, QEMU, Mono for Renode, ser2net and
#               ccache when run as root; builds the firmware first)
#   make firmware   the emulator firmware: engine-less, and with TFLM (reference and CMSIS-NN
#               kernels) when a TFLM tree is found ($$TFLM_ROOT, else ../shared/tflm); cached by ccache
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
# mono-complete runs Renode (../shared/renode); ccache caches the firmware builds (~/.cache/ccache).
toolchain:
	@if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null \
	    || ! command -v cmake >/dev/null || ! [ -x /usr/sbin/ser2net ] || ! command -v mono >/dev/null \
	    || ! command -v ccache >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing the ARM toolchain, CMake, QEMU, Mono, ser2net and ccache (apt-get)"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	      gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib \
	      qemu-system-arm cmake ser2net mono-complete ccache >/dev/null; \
	  else echo "ARM toolchain, QEMU, Mono, ser2net or ccache missing and not root: their tests will skip"; fi; \
	fi

# Every firmware preset this machine can build (say why the others are skipped); up to date in seconds.
firmware: $(STAMP) toolchain
	@if command -v arm-none-eabi-gcc >/dev/null && command -v cmake >/dev/null; then \
	  $(BIN)/python -m device_harness.firmware_builds; \
	else echo "firmware: no ARM toolchain (arm-none-eabi-gcc, cmake): not built, its tests will skip"; fi

# Two workers (pytest-xdist): uploads to the emulators wait on their emulated UARTs, not on the CPU,
# so they overlap with training; tests/conftest.py groups what must share a worker.
test: $(STAMP) toolchain firmware
	$(BIN)/python -m pytest -n 2 --dist loadgroup

clean:
	rm -rf $(VENV) firmware/build runs
