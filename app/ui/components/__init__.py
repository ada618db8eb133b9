"""The app's drawing blocks: cards, tables, highlight, controls, banners, rows, status sections."""
