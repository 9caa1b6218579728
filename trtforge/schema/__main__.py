"""python -m trtforge.schema: rewrite engines.schema.json from the manifest loader's tables."""

from trtforge.schema import SCHEMA_FILE, text

SCHEMA_FILE.write_text(text())
print(SCHEMA_FILE)
