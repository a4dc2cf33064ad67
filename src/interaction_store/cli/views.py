"""Commands for the views."""
