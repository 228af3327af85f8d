"""Report stage: `onet report OUT_DIR` (a static HTML page of a run's results).

Public entry points (other stages and the CLI use only these):
    write_report(out_dir, data_dir=None, max_objects=None, ...) -> ReportSummary
"""

from onet.report.build import ReportSummary, write_report

__all__ = ["write_report", "ReportSummary"]
