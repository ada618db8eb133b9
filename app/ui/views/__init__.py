"""The app's pages, run by `st.navigation` in app/ui/main.py (each file is a page script, not imported)."""
