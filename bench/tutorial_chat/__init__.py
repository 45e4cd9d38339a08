"""A chat the Channels tutorial way, as a yardstick for `bench/inbox_load.py --compare`."""
