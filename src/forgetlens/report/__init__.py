"""report.html from results.json alone: its sentences, tables and figures (the derived tables themselves:
``analysis/summary.py``)."""
