## tests/backends
