"""Automation conditions shared by everything that aggregates across runs."""

import dagster as dg

# Like `eager()`, but a run whose partition failed (bad input) must not hold back everyone
# else's results, so missing upstream partitions do not block the refresh.
REFRESH_ON_ANY_UPDATE = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
)
