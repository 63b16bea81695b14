"""Figures and HTML a person can check before trusting the numbers."""
