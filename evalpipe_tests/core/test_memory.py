"""Arrow's allocator in evalpipe's processes: the system one, which hands big freed blocks
back at once, so one phase of an ingest does not sit on the memory of the last."""

import pyarrow as pa

import evalpipe  # noqa: F401 (importing evalpipe chooses the allocator)
from evalpipe.core.memory import release_memory


def test_arrow_allocates_with_the_system_allocator() -> None:
    assert pa.default_memory_pool().backend_name == "system"


def test_tables_read_after_a_release_are_whole() -> None:
    before = pa.default_memory_pool().bytes_allocated()
    table = pa.table({"x": pa.array(range(1_000_000))})
    assert pa.default_memory_pool().bytes_allocated() >= before + 8_000_000
    del table
    release_memory()
    assert pa.table({"x": pa.array(range(10))})["x"].to_pylist() == list(range(10))
