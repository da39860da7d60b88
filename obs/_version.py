__version__ = "0.1.0"
LIB = "obs"  # the `$lib` of every event
