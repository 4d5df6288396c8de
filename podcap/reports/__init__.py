"""Reports: each turns an :class:`~podcap.analysis.context.Analysis` into one DataFrame.

Every report is one record in :mod:`podcap.reports.registry` (name, description, builder, whether
it runs per bucket, what it needs decoded, its html section); the builders live one module a
report here and are imported when first used, so reading the registry costs no pandas.
"""

from podcap.reports.registry import REPORTS, Report, build_report, check_reports, report

__all__ = ["REPORTS", "Report", "build_report", "check_reports", "report"]
