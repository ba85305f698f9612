"""`mplab compare` (placeholder until written)."""


def compare() -> None:
    """Compare."""
