"""Avro schemas of the internal records (``*.avsc``), shipped as package data."""
