from tests.spec_harness import one_thread  # noqa: F401 (autouse: one torch thread for the tiny matrices)
