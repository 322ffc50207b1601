"""The macvland benchmark (`make bench`); see bench/bench.py."""
