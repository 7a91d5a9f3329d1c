"""Scale-out on Ray Serve: many replicas, each one ``Studio``, behind the same A1111 and ``/loradeck/v1`` API.

``loradeck serve --ray`` runs it; ``deploy.build_app`` (or ``deploy:app_builder`` in a Ray Serve config file) gives
the application to people who deploy it themselves. ``policy.py`` (the routing rule) and ``routes.py`` (what happens
to each route) import no Ray; the rest needs the ``ray`` extra (``pip install "loradeck[ray]"``). See
docs/scale-out.md.
"""
