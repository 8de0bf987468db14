"""The basic geographic database: PostGIS layers, spatial and network queries, OGC API Features.

Pure modules (no database, web framework or environment): ``layers`` (the layer catalogue),
``filters`` (planner question specs), ``network`` (traces, valve isolation), ``cql`` (CQL2 to
SQL), ``demo`` and ``grid`` (demo city, H3 cells), ``epanet`` (EPANET to layers),
``loading`` (file checks; ``read_``/``load_`` touch files and the database), ``export``.
Adapters: ``postgis`` (writes), ``planner`` (questions), ``analysis`` (network answers),
``multiscale`` (zoom bands, aggregates), ``ogc`` (pygeoapi), ``http`` (Flask), ``cli`` (typer).
See docs/gis.md.
"""
