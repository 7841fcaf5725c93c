"""The declarations: what each source's files are, the rules a row must keep, and text
read as values."""
