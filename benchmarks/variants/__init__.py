"""Routing-kernel variants measured against parity.routing.fused and kept as records (see
reports/bench/NOTES.md); parity does not use them."""
