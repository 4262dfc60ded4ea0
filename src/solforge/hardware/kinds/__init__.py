"""Built-in device kinds, one file each (`cpu.py`, `cuda.py`).

Every module in this folder is imported on the first registry lookup
(`solforge.hardware.registry`), and registers its kind with `@register_device_kind`. A
new kind is one new file here (or anywhere, loaded through `$SOLFORGE_PLUGINS`); no other
file names it. See docs/internals.md, "Adding a device kind".
"""
