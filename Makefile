# Deid — every target installs what it needs (idempotently) on a fresh Debian 12 machine.
#   make demo    set up, build a sample clip from Debian-packaged material, anonymize it
#   make test    set up and run the whole test suite
#   make bench   set up and run the benchmarks (table + bench/results.json)
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

CONFIG        ?= Release
DOTNET        ?= dotnet
MODELS        ?= $(or $(DEID_MODELS),$(CURDIR)/models)
ARTIFACTS     := $(or $(DEID_ARTIFACTS),$(CURDIR)/artifacts)
DEID          := $(ARTIFACTS)/bin/Deid.Cli/$(shell echo $(CONFIG) | tr A-Z a-z)/deid
SUDO          := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Runtime: ffmpeg, dlib + its 68-point model, OpenCV's native deps; build: g++/pkg-config for the dlib shim;
# python3 for the TorchSharp library fix-up; python3-torch for reference benchmarks; chromium renders the
# evaluation report in tests; npm fetches the face-api weights; opencv-doc ships the demo's face photo;
# slurm-wlm + munge run `deid batch --slurm` on a one-node cluster in the tests.
APT_PACKAGES  := ffmpeg libdlib-dev libdlib-data libgtk-3-0 libatomic1 libdrm2 g++ make pkg-config \
                 python3 python3-torch python3-torchvision chromium fonts-dejavu-core opencv-doc ca-certificates \
                 slurm-wlm munge

.PHONY: setup apt restore build models demo test bench clean

setup: apt build models

apt:
	missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done)
	if [ -n "$$missing" ]; then
	  echo "installing Debian packages:" $$missing
	  $(SUDO) apt-get update -qq
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing
	fi
	# npm may come with a nodejs that is not Debian's (its own npm inside): only install Debian's where none is found.
	command -v npm >/dev/null || { $(SUDO) apt-get update -qq; DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm; }
	command -v $(DOTNET) >/dev/null || { echo "error: the .NET 10 SDK (dotnet) is required: https://learn.microsoft.com/dotnet/core/install/linux-debian" >&2; exit 1; }

restore: apt
	$(DOTNET) restore Deid.sln --nologo -v quiet

build: restore
	$(MAKE) -s -C src/Deid.Faces/native
	$(DOTNET) build Deid.sln -c $(CONFIG) --no-restore --nologo -v quiet -clp:ErrorsOnly

# Weights that package registries serve (face-api via npm, dlib via Debian); idempotent.
models: build
	DEID_MODELS="$(MODELS)" $(DEID) models fetch

demo: setup
	bash scripts/make-demo-sample.sh samples/demo.mp4
	mkdir -p out
	DEID_MODELS="$(MODELS)" $(DEID) anonymize samples/demo.mp4 -o out/demo_anonymized.mp4 --mode blur --report out/demo_report.json
	echo "demo output: $(CURDIR)/out/demo_anonymized.mp4 (report: out/demo_report.json)"

test: setup
	DEID_MODELS="$(MODELS)" $(DOTNET) test --solution Deid.sln -c $(CONFIG) --no-build

bench: setup
	DEID_MODELS="$(MODELS)" $(DOTNET) run --project src/Deid.Bench -c $(CONFIG) --no-build -- $(ARGS)

clean:
	rm -rf artifacts src/Deid.Faces/native/build out bench
