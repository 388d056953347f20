"""Tests against independent implementations of the formats Rewind speaks (Apache Avro's Java library)."""
