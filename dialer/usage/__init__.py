"""Usage metering, the tenant's usage plan (billing rounding, budgets) and budget alerts (issue 19).

  meter.py     what one call counts for, and the per-day and per-month counters in Redis (counted exactly once,
               in the transaction that records the call's outcome: dialer/facts.py FactStore.record_outcome),
               each increment also a `usage` audit entry in that transaction (the record's copy)
  plan.py      the tenant's plan as data: rounding rule and budgets with their alert thresholds and hard stop
  budgets.py   after each metered call: alerts (webhook usage.budget_alert) and the hard stop (dialer/holds.py)
  report.py    reading usage per period from the Redis counters (API, CLI, CSV, Prometheus)
  archived.py  the same report rebuilt from the record's usage_records, and which source answers a request

The counters live in Redis under t:{T}:usage:...; the archiver (dialer/record/archiver.py) copies the `usage`
entries into the record, so a period's figures survive a Redis data loss.
"""
