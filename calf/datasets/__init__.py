"""Dataset adapters: find every case of a release in its real folder layout."""
