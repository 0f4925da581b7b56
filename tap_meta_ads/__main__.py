"""``python -m tap_meta_ads``: the same CLI as the ``tap-meta-ads`` console script."""

from tap_meta_ads.tap import main

main()
