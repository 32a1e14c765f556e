"""The study's outputs for people and programs: derived tables, figures, report.html."""
