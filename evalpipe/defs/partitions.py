"""One dynamic partition per run directory; the key is the run id (path below the dumps root)."""

import dagster as dg

olmes_runs = dg.DynamicPartitionsDefinition(name="olmes_runs")
