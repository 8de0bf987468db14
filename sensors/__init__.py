"""The shared vocabulary of cityops: quantities and units, topics, payloads, the sensor catalogue.

This package imports no other part of cityops, no broker, database or web framework.
"""
