import os

from hypothesis import settings

settings.register_profile("ci", max_examples=30, deadline=None)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# Slower than about a second each on 2 cores, or driving a browser / a notebook kernel / a Ray
# cluster: left out of the contributor loop (`pytest -m "not slow"`), always run by .ci/run.
SLOW = (
    "test_planner.py::test_ray_path_matches_local",
    "test_web.py::test_the_page_plans_in_a_browser",
    "test_tables.py::test_the_example_notebook_runs_without_errors",
    "test_validation_fit.py",
    "test_validation_cli.py",
    "test_fuzz_inputs.py",
)


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if any(key in item.nodeid for key in SLOW):
            item.add_marker(pytest.mark.slow)


def _no_transfer_bands():
    return {"min_rows": 0, "bands": {}}


def _no_lodo_band(op_class):
    return None


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "calibration_only: the calibration residual band alone (no transfer band from the "
        "published set, none from leave-one-device-out; op bands add edge to edge), for "
        "tests of the residual mechanics",
    )


def pytest_runtest_setup(item):
    if item.get_closest_marker("calibration_only") is not None:
        import hwsim.perf.bands as bands
        import hwsim.perf.transfer as transfer

        item._saved_bands = transfer.shipped_bands, bands.lodo_factors
        transfer.shipped_bands = _no_transfer_bands
        bands.lodo_factors = _no_lodo_band


def pytest_runtest_teardown(item):
    saved = getattr(item, "_saved_bands", None)
    if saved is not None:
        import hwsim.perf.bands as bands
        import hwsim.perf.transfer as transfer

        transfer.shipped_bands, bands.lodo_factors = saved
