"""Usage metering, the tenant's usage plan (billing rounding, budgets) and budget alerts (issue 19).

  meter.py    what one call counts for, and the per-day and per-month counters in Redis (counted exactly once,
              in the transaction that records the call's outcome: dialer/facts.py FactStore.record_outcome)
  plan.py     the tenant's plan as data: rounding rule and budgets with their alert thresholds and hard stop
  budgets.py  after each metered call: alerts (webhook usage.budget_alert) and the hard stop (dialer/holds.py)
  report.py   reading usage per period (API, CLI, CSV, Prometheus)

The counters live in Redis under t:{T}:usage:...; the PostgreSQL record (another branch) archives them later
through report.py's readers: nothing else reads or writes these keys.
"""
