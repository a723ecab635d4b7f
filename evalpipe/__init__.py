"""evalpipe: evaluation dumps in, trustworthy versioned tables out."""

from evalpipe.core.memory import use_system_allocator

use_system_allocator()
