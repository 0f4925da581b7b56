"""tap-meta-ads: a Singer tap for the Meta Marketing API."""
