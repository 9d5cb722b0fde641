"""The pipeline as data, the flows each section wants, cookies, flows as text."""
