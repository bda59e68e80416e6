pytest_plugins = ["tests.sim_fixtures", "tests.fakes.fixtures"]
