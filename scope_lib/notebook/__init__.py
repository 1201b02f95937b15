"""Notebook support: parameters, the papermill runner, the results page, verdicts and figure data."""
