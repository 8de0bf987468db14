"""The shell on top of every part: the `cityops` command, `cityops up` and the private local
stack, and the detection evaluation. It may import every part; no part imports it (checked by
import-linter)."""
