"""Evaluation reports: per-dataset leaderboards, plots, and one self-contained HTML page.

For the report rules (workflow/rules/report.smk) and for notebooks. Three rules, three modules:

  report_model    plots.run_model_plots      one model's plots on one dataset (all its seeds)
  report_dataset  leaderboard.run_dataset_report  leaderboard, paired comparisons, data summary
  report          html.run_report            results/report/index.html for the whole run

`data` reads the validate and split summaries, `runs` looks MLflow run ids up through
`biomol_dl.tracking`, and `targets` turns the config into the rules' file lists and settings
(workflow/rules/report.smk calls it). Importing this package is cheap: matplotlib, scipy and RDKit load inside
the functions that draw or test.
"""
