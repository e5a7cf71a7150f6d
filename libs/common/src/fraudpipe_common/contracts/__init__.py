"""The data contracts on fraudpipe's topics (DESIGN.md §4)."""
