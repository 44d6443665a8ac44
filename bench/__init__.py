"""The benchmark harness (`make bench`): our service against MLServer, in process, batch, history."""
