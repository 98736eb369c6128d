"""``quantlab serve``: a read-only web dashboard over the results store.

Pages (lab, runs, one run, a comparison, trends) and JSON endpoints, on FastAPI:
:mod:`~quantlab.harness.serve.app` builds the application, :mod:`.pages` and :mod:`.api`
hold the routes, :mod:`.data` reads the store and calls the report's functions,
:mod:`.lab` merges the store's devices with the live lab, :mod:`.auth` decides who may
read, :mod:`.context` keeps secrets out of every response, :mod:`.markup` draws the pages.
Importing this package imports nothing heavy; the web framework comes with the
``quantlab[serve]`` extra.
"""
