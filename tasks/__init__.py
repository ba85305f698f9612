"""The chapter's workloads as plain functions: JSON-able arguments in, JSON-able results out.

Nothing here touches Redis, prints, or imports `workers`/`cli`; any RQ worker with mplab installed can
import and run these functions, and mplab's worker node runs only the ones registered here.
"""
