"""Benchmarks: rtinspect proxy and report side by side with direct connections, mitmdump and tshark."""
