"""Errors raised by the BIDS layer; the CLI turns them into one line and exit code 1."""


class BIDSInputError(ValueError):
    """The BIDS dataset, a label or a filter cannot be used as given."""
