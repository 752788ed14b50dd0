# dask-hpc: set-up and the two commands of the README.
#   make demo   create .venv, install dask-hpc, run the xarray demo on the `local` system
#   make test   create .venv, install dask-hpc[test,...], lint, type-check, build the docs, run the whole suite
#               (the suite installs and starts the real SLURM, SGE, sshd, Chromium it needs: scripts/)
#   make docs   the documentation (docs/, Sphinx), warnings as errors, into docs/_build/html
#   make test-fast  the tests that need no daemon, no session's scheduler, no mpirun, no browser
#               (pure code, golden scripts, recorded outputs, the keeper over a fake batch system)
#   make bench-startup   time to 4 workers on the local SLURM, against dask-jobqueue (bench/)
#   make bench-mpi       mpirun -np 4 until all workers are seen, against dask-mpi (bench/)
#   make bench-open      opening 100-1000 NetCDF files on the workers, against serial xarray (bench/)
#   make bench-churn     worker jobs shorter than the work on the local SLURM, against dask-jobqueue (bench/)
#   make bench-scale     1000 worker jobs on the local SLURM (arrays), against dask-jobqueue's scale(1000) (bench/)
#   make bench-join      100 workers joining one scheduler at once on loopback, TLS against TCP (bench/)
#   make bench-network   worker to worker over mpi://, tcp and tls, against MPI Send/Recv (mpirun -np 4)
#   make bench-network-tcp  the same with MPI over its TCP transport (the path between nodes without a fast network)
#   make bench-phases    where the time of one fetch over mpi:// goes, phase by phase (mpirun -np 4)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint typecheck docs pytest bench-startup bench-mpi bench-open bench-scale bench-join bench-churn bench-network bench-network-tcp bench-phases clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,mpi,jupyter,xarray,docs]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/dask-hpc demo

test: lint typecheck docs pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench examples docs/conf.py
	$(BIN)/ruff format --check src tests bench examples docs/conf.py
	$(BIN)/lint-imports

typecheck: $(BIN)/.installed
	$(BIN)/mypy

docs: $(BIN)/.installed
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# Both cores: the live tests wait on batch systems and processes half of the time. Tests that
# share a batch system run one after another in one worker (tests/conftest.py: xdist_group).
pytest: $(BIN)/.installed
	$(BIN)/pytest -n 2 --dist loadgroup

# The markers are set from the fixtures each test uses (tests/conftest.py).
FAST := not slurm and not sge and not oar and not laptop and not mpi and not session and not slow
test-fast: $(BIN)/.installed
	$(BIN)/pytest -n 2 -m "$(FAST)"

bench-startup: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	scripts/local-slurm up
	$(BIN)/python bench/startup.py

bench-mpi: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/mpi_startup.py

bench-open: $(BIN)/.installed
	$(BIN)/python bench/open_many.py

bench-scale: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	scripts/local-slurm up
	$(BIN)/python bench/scale.py

bench-join: $(BIN)/.installed
	$(BIN)/python bench/join.py

bench-churn: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	scripts/local-slurm up
	$(BIN)/python bench/churn.py

# Open MPI refuses root unless told (our CI machine runs as root).
AS_ROOT := $(if $(filter 0,$(shell id -u)),OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1,)
STAMP := $(shell date +%Y%m%d-%H%M%S)

# On one node: Open MPI's own traffic stays on loopback.
bench-network: $(BIN)/.installed
	$(AS_ROOT) OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_tcp_if_include=lo $(BIN)/mpirun -np 4 --oversubscribe $(BIN)/dask-hpc bench network \
		--json bench/results/network-mpi-$(STAMP).json --plot bench/results/network-mpi-$(STAMP).png

# Open MPI's TCP transport only (no shared memory): what MPI does between nodes without InfiniBand.
bench-network-tcp: $(BIN)/.installed
	$(AS_ROOT) OMPI_MCA_btl=tcp,self OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_tcp_if_include=lo $(BIN)/mpirun -np 4 --oversubscribe $(BIN)/dask-hpc bench network \
		--json bench/results/network-mpi-btl-tcp-$(STAMP).json --plot bench/results/network-mpi-btl-tcp-$(STAMP).png

bench-phases: $(BIN)/.installed
	$(AS_ROOT) OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_tcp_if_include=lo $(BIN)/mpirun -np 4 --oversubscribe $(BIN)/python bench/fetch_phases.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache docs/_build
