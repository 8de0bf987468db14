"""cityops: the kernel (``cityops.kernel``) below every part and the shell (``cityops.shell``)
above them. The parts themselves are the top-level packages sensors, ingestion, gis, alerts,
dashboards and simulators (docs/architecture.md)."""
