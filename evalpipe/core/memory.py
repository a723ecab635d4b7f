"""Keeping the peak resident memory of an ingest down between its big phases.

An ingest alternates big, short-lived allocations: a run's instance tables are written in
chunks, then the checks read narrow frames of them, one table after the other. Arrow's default
allocator (mimalloc) keeps freed pages for reuse, so each phase's peak sits on top of the last
one's; the system allocator hands big blocks back as they are freed. Measured on the large
end-to-end benchmark: peak RSS 815 MB with mimalloc, 673 MB with the system allocator, same time.
"""

import pyarrow as pa


def use_system_allocator() -> None:
    """Make the system allocator Arrow's default for this process (every table read or written
    afterwards uses it)."""
    pa.set_memory_pool(pa.system_memory_pool())


def release_memory() -> None:
    """Hand what Arrow has freed back to the system now (`malloc_trim` under glibc), before the
    next big phase allocates."""
    pa.default_memory_pool().release_unused()
