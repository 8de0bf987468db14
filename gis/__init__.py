"""The basic geographic database: PostGIS layers, spatial and network queries, OGC API Features."""
