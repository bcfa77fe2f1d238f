## tests/core
