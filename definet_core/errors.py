"""Errors raised for bad user input: always one line naming the input and what is wrong."""


class DefiNetInputError(ValueError):
    """Bad input (file, structure, element, host mismatch); the message names the input."""
