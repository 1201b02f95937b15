"""Compare a reference_histories.py output with the stored fixture: exit 1 on any difference."""
import json
import sys

a, b = (json.load(open(p)) for p in sys.argv[1:3])
bad = 0
for name in a:
    if name.startswith("_"):
        continue
    if a[name] != b.get(name):
        bad += 1
        print("DIFFERENT", name, a[name]["params_sha256"][:12], b.get(name, {}).get("params_sha256", "")[:12])
        for ra, rb in zip(a[name]["history"], b[name]["history"]):
            for k in ra:
                if ra[k] != rb.get(k):
                    print("   ", k, ra[k], rb.get(k))
    else:
        print("identical", name)
sys.exit(1 if bad else 0)
