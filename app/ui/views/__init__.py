"""One module per page of the app, listed in `app/ui/main.py`'s navigation."""
