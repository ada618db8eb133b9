"""Driving the app's Search page under AppTest: the query every page test asks, the result cards as HTML, a search
and the threshold slider. A helper module, not a test module: the page tests import from here."""

from __future__ import annotations

from bs4 import BeautifulSoup

QUERY = "how do I reset my VPN token"


def cards(at) -> list[BeautifulSoup]:
    return [BeautifulSoup(h.value, "html.parser").select_one(".kb-card") for h in at.html
            if 'class="kb-card"' in h.value]


def search(at, query: str):
    at.text_input(key="kb_query").input(query)
    next(b for b in at.button if b.label == "Search").click()
    return at.run()


def set_threshold(at, value: float):
    at.slider(key="kb_threshold").set_value(value)
    return at.run()
