"""``python -m t2vlad_lib.course`` (``make shipped``): train what is missing and pack shipped_runs/."""

from . import regenerate

manifest = regenerate()
print(f"shipped {len(manifest['runs'])} runs "
      f"({sum(e['checkpoint'] is not None for e in manifest['runs'].values())} with weights)")
