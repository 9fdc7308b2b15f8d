"""chatopsd: a ChatOps daemon for on-call teams."""

__version__ = "0.1.0"
